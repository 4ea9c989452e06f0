// Package errmark attaches a sentinel error to an error without changing
// its text. Sentinels name their package ("control: not running"), so that
// errors.Is and a bare sentinel in a log say where they come from, while
// the sentence a user reads ("sockvisor is not running: no daemon answers
// on ...") is written out whole where it is made.
//
// Invariant: Mark(err, kind).Error() == err.Error(), and errors.Is and
// errors.As reach kind as well as everything err wraps.
package errmark

// Mark returns err, with the same text, matching kind too; nil if err is.
func Mark(err, kind error) error {
	if err == nil {
		return nil
	}
	return &marked{err: err, kind: kind}
}

type marked struct{ err, kind error }

func (m *marked) Error() string   { return m.err.Error() }
func (m *marked) Unwrap() []error { return []error{m.kind, m.err} }
