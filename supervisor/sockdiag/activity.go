package sockdiag

// Activity is what a listening socket's traffic looks like to the kernel.
type Activity struct {
	// Conns counts the server ends of established connections bound to the
	// path: a connection a listener accepted (or that still waits in its
	// queue) carries the listener's bound name (UDIAG_SHOW_NAME), while the
	// client end is unbound. It never counts the listener itself.
	Conns int
	// Queue is the listener's accept queue (the sum if several listen on
	// the path).
	Queue uint32
}

// ActivityByPath reports, for every path a listening or established AF_UNIX
// socket is bound to, its connections and accept queue, from one dump of
// the kernel's socket table. Nothing is connected to or accepted.
func ActivityByPath() (map[string]Activity, error) {
	all, err := dump(1<<StateListen | 1<<StateEstablished)
	if err != nil {
		return nil, err
	}
	out := map[string]Activity{}
	for _, s := range all {
		if s.Path == "" || s.Path[0] == '@' {
			continue
		}
		a := out[s.Path]
		switch s.State {
		case StateListen:
			a.Queue += s.Queue
		case StateEstablished:
			a.Conns++
		}
		out[s.Path] = a
	}
	return out, nil
}
