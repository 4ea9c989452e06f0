// Package control is sockvisor's root-only control API: newline-delimited
// JSON over a Unix socket, one request per connection.
//
// Invariant: a request is served only if the peer's SO_PEERCRED uid is 0, on
// top of the socket file's 0600 root:root mode; the socket is never unlinked
// while another sockvisor answers on it.
package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
)

// Sentinel errors for clients and for Listen.
var (
	ErrNotRunning     = errors.New("sockvisor is not running")
	ErrNotAllowed     = errors.New("the control API is root-only")
	ErrAlreadyRunning = errors.New("another sockvisor is already running")
)

// Ops understood by the server.
const (
	OpStatus  = "status"
	OpRestart = "restart"
	OpReload  = "reload"
)

// Request is one call.
type Request struct {
	Op      string `json:"op"`
	Backend string `json:"backend,omitempty"`
}

// Response is the answer to one call. Error is set when OK is false.
type Response struct {
	OK     bool            `json:"ok"`
	Error  string          `json:"error,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
}

// Handler does the work; the daemon implements it.
type Handler interface {
	Status(ctx context.Context) (any, error)
	Restart(ctx context.Context, backend string) error
	Reload(ctx context.Context) error
}

// Server serves the control socket.
type Server struct {
	ln  *net.UnixListener
	h   Handler
	log hclog.Logger
}

// Listen binds path with mode 0600, replacing a stale socket but refusing to
// touch a live one or anything that is not a socket.
func Listen(path string, h Handler, log hclog.Logger) (*Server, error) {
	if err := clearStale(path); err != nil {
		return nil, err
	}
	old := unix.Umask(0o177)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	unix.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("creating control socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("chmod control socket %s: %w", path, err)
	}
	return &Server{ln: ln, h: h, log: log}, nil
}

func clearStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("checking control socket %s: %w", path, err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("control_socket %s exists and is not a socket; remove it or choose another control_socket", path)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("%w: %s answers; stop it first (systemctl stop sockvisor)", ErrAlreadyRunning, path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("probing control socket %s: %w", path, err)
	}
	return os.Remove(path)
}

// Serve answers requests until ctx ends, then closes the listener and
// removes the socket file. Each request gets its own goroutine so a slow
// restart does not block status.
func (s *Server) Serve(ctx context.Context) {
	s.ln.SetUnlinkOnClose(true)
	go func() { <-ctx.Done(); s.ln.Close() }()
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			if ctx.Err() == nil {
				s.log.Error("control socket accept failed", "error", err)
			}
			return
		}
		go s.serveConn(ctx, c)
	}
}

func (s *Server) serveConn(ctx context.Context, c *net.UnixConn) {
	defer c.Close()
	enc := json.NewEncoder(c)
	uid, err := peerUID(c)
	if err != nil || uid != 0 {
		s.log.Warn("control request refused", "peer_uid", uid, "error", err)
		enc.Encode(Response{Error: ErrNotAllowed.Error() + "; run the command as root (sudo)"})
		return
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var req Request
	if err := json.NewDecoder(bufio.NewReader(c)).Decode(&req); err != nil {
		enc.Encode(Response{Error: "malformed request: " + err.Error()})
		return
	}
	c.SetReadDeadline(time.Time{})
	s.log.Debug("control request", "op", req.Op, "backend", req.Backend)
	enc.Encode(s.dispatch(ctx, req))
}

func (s *Server) dispatch(ctx context.Context, req Request) Response {
	var result any
	var err error
	switch req.Op {
	case OpStatus:
		result, err = s.h.Status(ctx)
	case OpRestart:
		err = s.h.Restart(ctx, req.Backend)
	case OpReload:
		err = s.h.Reload(ctx)
	default:
		err = fmt.Errorf("unknown operation %q", req.Op)
	}
	if err != nil {
		return Response{Error: err.Error()}
	}
	resp := Response{OK: true}
	if result != nil {
		raw, err := json.Marshal(result)
		if err != nil {
			return Response{Error: err.Error()}
		}
		resp.Result = raw
	}
	return resp
}

func peerUID(c *net.UnixConn) (int, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return -1, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return -1, err
	}
	if cerr != nil {
		return -1, cerr
	}
	return int(cred.Uid), nil
}

// Call sends one request to the daemon at path and waits for the answer.
func Call(ctx context.Context, path string, req Request) (json.RawMessage, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	switch {
	case errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ECONNREFUSED):
		return nil, fmt.Errorf("%w: no daemon answers on %s; start it with `systemctl start sockvisor` (or `sockvisor run`)", ErrNotRunning, path)
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return nil, fmt.Errorf("%w: permission denied on %s; run the command as root (sudo)", ErrNotAllowed, path)
	case err != nil:
		return nil, fmt.Errorf("connecting to %s: %w", path, err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return nil, fmt.Errorf("sending request to %s: %w", path, err)
	}
	var resp Response
	if err := json.NewDecoder(c).Decode(&resp); err != nil {
		return nil, fmt.Errorf("reading answer from %s: %w", path, err)
	}
	if !resp.OK {
		if resp.Error == ErrNotAllowed.Error()+"; run the command as root (sudo)" {
			return nil, fmt.Errorf("%w; run the command as root (sudo)", ErrNotAllowed)
		}
		return nil, errors.New(resp.Error)
	}
	return resp.Result, nil
}
