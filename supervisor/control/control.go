// Package control is sockvisor's root-only control API: HTTP/1.1 over a
// Unix socket. GET /status returns JSON, POST /restart?backend=NAME,
// POST /start?backend=NAME, POST /stop?backend=NAME (on-demand backends) and
// POST /reload act, GET /metrics serves Prometheus text exposition.
//
// Invariant: a request is served only if the peer's SO_PEERCRED uid is 0, on
// top of the socket file's 0600 mode; the socket is never unlinked while
// another sockvisor answers on it.
package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/sockvisor/sockvisor/internal/errmark"
	"github.com/sockvisor/sockvisor/supervisor/sockets"
)

// Sentinel errors for clients and for Listen. The errors that match them
// carry a sentence of their own for the user (see errmark).
var (
	// ErrNotRunning means no daemon answers on the control socket.
	ErrNotRunning = errors.New("control: not running")
	// ErrNotAllowed means the caller is not root.
	ErrNotAllowed = errors.New("control: not allowed")
	// ErrAlreadyRunning means another sockvisor serves the control socket.
	ErrAlreadyRunning = errors.New("control: already running")
	// ErrRefused marks an answer in which the daemon declined the request
	// (unknown backend, bad config); other client errors are transport ones.
	ErrRefused = errors.New("control: refused")
)

// errRootOnly is ErrNotAllowed as a refused caller reads it.
func errRootOnly() error {
	return errmark.Mark(errors.New("the control API is root-only; run the command as root (sudo)"), ErrNotAllowed)
}

// Response is the JSON body of every answer. Error is set when OK is false.
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
	ln      *net.UnixListener
	srv     *http.Server
	h       Handler
	metrics http.Handler
	log     hclog.Logger
}

// Listen binds path with mode 0600, replacing a stale socket but refusing to
// touch a live one or anything that is not a socket.
// metrics may be nil.
func Listen(path string, h Handler, metrics http.Handler, log hclog.Logger) (*Server, error) {
	if err := clearStale(path, log); err != nil {
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
	s := &Server{ln: ln, h: h, metrics: metrics, log: log}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", s.status)
	mux.HandleFunc("POST /restart", s.restart)
	mux.HandleFunc("POST /reload", s.reload)
	mux.HandleFunc("POST /start", s.onDemand(OnDemand.StartBackend))
	mux.HandleFunc("POST /stop", s.onDemand(OnDemand.StopBackend))
	if metrics != nil {
		mux.Handle("GET /metrics", metrics)
	}
	s.srv = &http.Server{
		Handler:           s.rootOnly(mux),
		ReadHeaderTimeout: 10 * time.Second,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			uc, _ := c.(*net.UnixConn) // nil for anything else: refused
			uid, err := peerUID(uc)
			if err != nil {
				uid = -1
			}
			return context.WithValue(ctx, peerKey{}, uid)
		},
		ErrorLog: log.StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Debug}),
	}
	return s, nil
}

func clearStale(path string, log hclog.Logger) error {
	err := sockets.ClearStale(path, log)
	if errors.Is(err, sockets.ErrInUse) {
		return &alreadyRunning{path: path, err: err}
	}
	if err != nil {
		return fmt.Errorf("control_socket: %w", err)
	}
	return nil
}

// alreadyRunning is ErrAlreadyRunning for control socket path, with the
// sockets error it came from in its chain but not in its text: that one
// says to choose another socket name, and one fix is enough.
type alreadyRunning struct {
	path string
	err  error
}

func (e *alreadyRunning) Error() string {
	var se *sockets.Error
	if errors.As(e.err, &se) && se.PID > 0 {
		return fmt.Sprintf("another sockvisor (pid %d) is already running on control socket %s; stop it first (systemctl stop sockvisor) or set another control_socket", se.PID, e.path)
	}
	return fmt.Sprintf("control socket %s is in use by another process, likely another sockvisor; stop it first (systemctl stop sockvisor) or set another control_socket", e.path)
}

func (e *alreadyRunning) Unwrap() []error { return []error{ErrAlreadyRunning, e.err} }

type peerKey struct{}

// Serve returns only once no request is in flight, so the caller may tear
// down what the handlers use.
func (s *Server) Serve(ctx context.Context) {
	s.ln.SetUnlinkOnClose(true)
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		<-ctx.Done()
		// Restarts and reloads may take minutes; wait for them.
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		s.srv.Shutdown(sctx)
	}()
	if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		s.log.Error("control socket stopped", "error", err)
	}
	<-stopped
}

func (s *Server) rootOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A request without a peer uid (not from ConnContext) is refused too.
		if uid, ok := r.Context().Value(peerKey{}).(int); !ok || uid != 0 {
			s.log.Warn("control request refused", "peer_uid", uid, "path", r.URL.Path)
			reply(w, http.StatusForbidden, nil, errRootOnly())
			return
		}
		s.log.Debug("control request", "method", r.Method, "path", r.URL.Path)
		next.ServeHTTP(w, r)
	})
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	res, err := s.h.Status(r.Context())
	reply(w, http.StatusInternalServerError, res, err)
}

func (s *Server) restart(w http.ResponseWriter, r *http.Request) {
	replyNotice(w, http.StatusConflict, s.h.Restart(r.Context(), r.URL.Query().Get("backend")))
}

func (s *Server) reload(w http.ResponseWriter, r *http.Request) {
	reply(w, http.StatusConflict, nil, s.h.Reload(r.Context()))
}

// reply writes a Response; failCode is used when err is set.
func reply(w http.ResponseWriter, failCode int, result any, err error) {
	resp := Response{OK: err == nil}
	code := http.StatusOK
	if err != nil {
		resp.Error, code = err.Error(), failCode
	} else if result != nil {
		raw, merr := json.Marshal(result)
		if merr != nil {
			resp = Response{Error: merr.Error()}
			code = http.StatusInternalServerError
		}
		resp.Result = raw
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(resp)
}

func peerUID(c *net.UnixConn) (int, error) {
	if c == nil {
		return -1, errors.New("not a unix connection")
	}
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

// Client talks to a running daemon.
type Client struct {
	path string
	http *http.Client
}

// NewClient returns a client for the control socket at path.
func NewClient(path string) *Client {
	return &Client{path: path, http: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}}
}

// Status returns the daemon's status document.
func (c *Client) Status(ctx context.Context) (json.RawMessage, error) {
	return c.call(ctx, http.MethodGet, "/status")
}

// Restart replaces one backend's process.
func (c *Client) Restart(ctx context.Context, backend string) error {
	_, err := c.call(ctx, http.MethodPost, "/restart?backend="+url.QueryEscape(backend))
	return err
}

// Reload makes the daemon re-read its config; the error says why it failed.
func (c *Client) Reload(ctx context.Context) error {
	_, err := c.call(ctx, http.MethodPost, "/reload")
	return err
}

// Metrics returns the Prometheus text exposition.
func (c *Client) Metrics(ctx context.Context) (string, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://sockvisor/metrics", nil)
	resp, err := c.do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func (c *Client) do(req *http.Request) (*http.Response, error) {
	resp, err := c.http.Do(req)
	switch {
	case errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ECONNREFUSED):
		return nil, errmark.Mark(fmt.Errorf("sockvisor is not running: no daemon answers on %s; start it with `systemctl start sockvisor` (or `sockvisor run`)", c.path), ErrNotRunning)
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return nil, errmark.Mark(fmt.Errorf("the control API is root-only: permission denied on %s; run the command as root (sudo)", c.path), ErrNotAllowed)
	case err != nil:
		return nil, fmt.Errorf("talking to sockvisor on %s: %w", c.path, err)
	}
	return resp, nil
}

func (c *Client) call(ctx context.Context, method, path string) (json.RawMessage, error) {
	req, _ := http.NewRequestWithContext(ctx, method, "http://sockvisor"+path, nil)
	resp, err := c.do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r Response
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, fmt.Errorf("reading sockvisor's answer on %s: %w", c.path, err)
	}
	if !r.OK {
		if resp.StatusCode == http.StatusForbidden {
			return nil, errRootOnly()
		}
		return nil, refusal{r.Error}
	}
	return r.Result, nil
}

// refusal is the daemon's own reason, shown as is; it matches ErrRefused.
type refusal struct{ msg string }

func (r refusal) Error() string        { return r.msg }
func (r refusal) Is(target error) bool { return target == ErrRefused }
