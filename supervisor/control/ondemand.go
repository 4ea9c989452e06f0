package control

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
)

// OnDemand is implemented by a Handler that runs on-demand backends; the
// server then serves POST /start?backend=NAME and POST /stop?backend=NAME.
// Each returns the sentence to show the operator.
type OnDemand interface {
	StartBackend(ctx context.Context, backend string) (string, error)
	StopBackend(ctx context.Context, backend string) (string, error)
}

// Notice is an error a Handler's Restart returns when there was nothing to
// do: the request succeeds (exit 0) and the client shows Msg.
type Notice struct{ Msg string }

func (n Notice) Error() string { return n.Msg }

// message is the Result of a request that answers with a sentence.
type message struct {
	Message string `json:"message"`
}

func (s *Server) onDemand(run func(OnDemand, context.Context, string) (string, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		od, ok := s.h.(OnDemand)
		if !ok {
			reply(w, http.StatusNotFound, nil, errors.New("this sockvisor has no on-demand backends to start or stop"))
			return
		}
		msg, err := run(od, r.Context(), r.URL.Query().Get("backend"))
		reply(w, http.StatusConflict, message{msg}, err)
	}
}

// replyNotice is reply for calls whose Handler may return a Notice.
func replyNotice(w http.ResponseWriter, failCode int, err error) {
	var n Notice
	if errors.As(err, &n) {
		reply(w, failCode, message{n.Msg}, nil)
		return
	}
	reply(w, failCode, nil, err)
}

func (c *Client) message(ctx context.Context, path, backend string) (string, error) {
	raw, err := c.call(ctx, http.MethodPost, path+"?backend="+url.QueryEscape(backend))
	if err != nil || len(raw) == 0 {
		return "", err
	}
	var m message
	if err := json.Unmarshal(raw, &m); err != nil {
		return "", err
	}
	return m.Message, nil
}

// RestartMessage is Restart that also returns the daemon's sentence when
// there was nothing to do (an idle on-demand backend), else "".
func (c *Client) RestartMessage(ctx context.Context, backend string) (string, error) {
	return c.message(ctx, "/restart", backend)
}

// Start starts an on-demand backend now; it returns what the daemon did.
func (c *Client) Start(ctx context.Context, backend string) (string, error) {
	return c.message(ctx, "/start", backend)
}

// Stop puts an on-demand backend back to idle; it returns what the daemon did.
func (c *Client) Stop(ctx context.Context, backend string) (string, error) {
	return c.message(ctx, "/stop", backend)
}
