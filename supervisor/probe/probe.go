// Package probe asks a backend over its unix socket whether it serves.
//
// Invariant: every probe opens exactly one connection, is bounded by the
// context deadline or DefaultTimeout (whichever is sooner), and closes the
// connection before returning; nothing is left running. The *On variants
// run the same exchange on a connection the caller opened and still owns
// (readiness first checks who accepted it); they never close it. Dial errors keep the
// errno, so callers test errors.Is(err, syscall.ENOENT), ECONNREFUSED,
// EACCES or EAGAIN.
//
// A backend is ready when it answers in its protocol: HTTP and uwsgi
// requests must get a response whose status is below 500 (4xx still proves
// the application server is up and routing); FastCGI must answer
// FCGI_GET_VALUES with a management record.
package probe

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// DefaultTimeout bounds every probe; a context deadline can only shorten it.
const DefaultTimeout = 3 * time.Second

// Sentinel errors; probes wrap them, so test with errors.Is.
var (
	// ErrServerError means the backend answered with a 5xx status.
	ErrServerError = errors.New("probe: backend answered with a server error")
	// ErrProtocol means the reply was not the protocol asked for.
	ErrProtocol = errors.New("probe: reply is not in the expected protocol")
)

// Kind is what Detect thinks a socket speaks.
type Kind string

// Detect results.
const (
	KindFastCGI     Kind = "fcgi"
	KindHTTP        Kind = "http"
	KindUWSGILikely Kind = "uwsgi-likely"
	KindUnknown     Kind = "unknown"
)

// Host is the Host header (and SERVER_NAME) a probe sends.
const Host = "localhost"

// dial connects to path and arms the deadline; the returned stop func must
// be called before closing.
func dial(ctx context.Context, path string) (net.Conn, func() bool, error) {
	deadline := time.Now().Add(DefaultTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	dctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(dctx, "unix", path)
	if err != nil {
		return nil, nil, fmt.Errorf("connecting to %s: %w", path, err)
	}
	stop, err := arm(ctx, conn)
	if err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("connecting to %s: %w", path, err)
	}
	return conn, stop, nil
}

// arm bounds conn by ctx's deadline or DefaultTimeout; the returned stop
// func must be called before conn is closed or reused.
func arm(ctx context.Context, conn net.Conn) (func() bool, error) {
	deadline := time.Now().Add(DefaultTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := conn.SetDeadline(deadline); err != nil {
		return nil, err
	}
	// Cancelling ctx must interrupt a blocked read, not only the dial.
	return context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) }), nil
}

// on arms conn for one exchange and names it for error messages.
func on(ctx context.Context, conn net.Conn) (string, func() bool, error) {
	path := conn.RemoteAddr().String()
	stop, err := arm(ctx, conn)
	if err != nil {
		return path, nil, fmt.Errorf("probing %s: %w", path, err)
	}
	return path, stop, nil
}

// HTTP sends "GET urlPath" with a Host header and returns the status code.
// The error is nil only for a status below 500.
func HTTP(ctx context.Context, path, urlPath string) (int, error) {
	if !strings.HasPrefix(urlPath, "/") {
		return 0, fmt.Errorf("probe path %q must start with /", urlPath)
	}
	conn, stop, err := dial(ctx, path)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	defer stop()
	return httpExchange(conn, path, urlPath)
}

// HTTPOn is HTTP on a connection the caller opened; it does not close it.
func HTTPOn(ctx context.Context, conn net.Conn, urlPath string) (int, error) {
	if !strings.HasPrefix(urlPath, "/") {
		return 0, fmt.Errorf("probe path %q must start with /", urlPath)
	}
	path, stop, err := on(ctx, conn)
	if err != nil {
		return 0, err
	}
	defer stop()
	return httpExchange(conn, path, urlPath)
}

func httpExchange(conn net.Conn, path, urlPath string) (int, error) {
	req := "GET " + urlPath + " HTTP/1.1\r\nHost: " + Host + "\r\nUser-Agent: sockvisor-probe\r\nAccept: */*\r\nConnection: close\r\n\r\n"
	if _, err := io.WriteString(conn, req); err != nil {
		return 0, fmt.Errorf("sending HTTP probe to %s: %w", path, err)
	}
	return readHTTPStatus(conn, path, "HTTP")
}

// UWSGI sends a uwsgi packet (modifier1 0, WSGI) for GET urlPath and returns
// the HTTP status of the reply. The error is nil only for a status below 500.
func UWSGI(ctx context.Context, path, urlPath string) (int, error) {
	pkt, err := uwsgiRequest(urlPath)
	if err != nil {
		return 0, err
	}
	conn, stop, err := dial(ctx, path)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	defer stop()
	return uwsgiExchange(conn, path, pkt)
}

// UWSGIOn is UWSGI on a connection the caller opened; it does not close it.
func UWSGIOn(ctx context.Context, conn net.Conn, urlPath string) (int, error) {
	pkt, err := uwsgiRequest(urlPath)
	if err != nil {
		return 0, err
	}
	path, stop, err := on(ctx, conn)
	if err != nil {
		return 0, err
	}
	defer stop()
	return uwsgiExchange(conn, path, pkt)
}

func uwsgiExchange(conn net.Conn, path string, pkt []byte) (int, error) {
	if _, err := conn.Write(pkt); err != nil {
		return 0, fmt.Errorf("sending uwsgi probe to %s: %w", path, err)
	}
	return readHTTPStatus(conn, path, "uwsgi")
}

func readHTTPStatus(conn net.Conn, path, proto string) (int, error) {
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) {
			return 0, fmt.Errorf("%s probe of %s: connection closed without a response: %w", proto, path, ErrProtocol)
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return 0, fmt.Errorf("%s probe of %s: no response before the deadline: %w", proto, path, err)
		}
		return 0, fmt.Errorf("%s probe of %s: reply is not an HTTP response (%v): %w", proto, path, err, ErrProtocol)
	}
	resp.Body.Close()
	if resp.StatusCode >= 500 {
		return resp.StatusCode, fmt.Errorf("%s probe of %s: backend answered %q: %w", proto, path, resp.Status, ErrServerError)
	}
	return resp.StatusCode, nil
}

// uwsgiRequest builds a uwsgi packet: 4-byte header (modifier1, datasize
// u16le, modifier2) then key/value vars, each length-prefixed u16le.
func uwsgiRequest(urlPath string) ([]byte, error) {
	u, err := url.ParseRequestURI(urlPath)
	if err != nil || !strings.HasPrefix(urlPath, "/") {
		return nil, fmt.Errorf("probe path %q must be a URL path starting with /", urlPath)
	}
	vars := [][2]string{
		{"REQUEST_METHOD", "GET"},
		{"REQUEST_URI", urlPath},
		{"PATH_INFO", u.Path},
		{"QUERY_STRING", u.RawQuery},
		{"SCRIPT_NAME", ""},
		{"SERVER_PROTOCOL", "HTTP/1.1"},
		{"SERVER_NAME", Host},
		{"SERVER_PORT", "80"},
		{"HTTP_HOST", Host},
		{"HTTP_USER_AGENT", "sockvisor-probe"},
	}
	var body []byte
	for _, kv := range vars {
		for _, s := range kv {
			body = binary.LittleEndian.AppendUint16(body, uint16(len(s)))
			body = append(body, s...)
		}
	}
	if len(body) > 0xffff {
		return nil, fmt.Errorf("probe path %q is too long for a uwsgi packet", urlPath)
	}
	pkt := []byte{0, 0, 0, 0}
	binary.LittleEndian.PutUint16(pkt[1:3], uint16(len(body)))
	return append(pkt, body...), nil
}

// FastCGI record types used here.
const (
	fcgiVersion         = 1
	fcgiGetValues       = 9
	fcgiGetValuesResult = 10
	fcgiUnknownType     = 11
)

// getValuesRecord is FCGI_GET_VALUES asking for the three standard
// variables, with empty values.
var getValuesRecord = func() []byte {
	var content []byte
	for _, name := range []string{"FCGI_MAX_CONNS", "FCGI_MAX_REQS", "FCGI_MPXS_CONNS"} {
		content = append(content, byte(len(name)), 0)
		content = append(content, name...)
	}
	hdr := []byte{fcgiVersion, fcgiGetValues, 0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint16(hdr[4:6], uint16(len(content)))
	return append(hdr, content...)
}()

// FastCGI sends FCGI_GET_VALUES and returns the variables the backend
// reported. An FCGI_UNKNOWN_TYPE answer also proves a FastCGI server is
// accepting; it returns an empty map and no error.
func FastCGI(ctx context.Context, path string) (map[string]string, error) {
	conn, stop, err := dial(ctx, path)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	defer stop()
	return fcgiGetValuesExchange(conn, path)
}

// FastCGIOn is FastCGI on a connection the caller opened; it does not
// close it.
func FastCGIOn(ctx context.Context, conn net.Conn) (map[string]string, error) {
	path, stop, err := on(ctx, conn)
	if err != nil {
		return nil, err
	}
	defer stop()
	return fcgiGetValuesExchange(conn, path)
}

func fcgiGetValuesExchange(conn net.Conn, path string) (map[string]string, error) {
	if _, err := conn.Write(getValuesRecord); err != nil {
		return nil, fmt.Errorf("sending FastCGI probe to %s: %w", path, err)
	}
	var hdr [8]byte
	if _, err := io.ReadFull(conn, hdr[:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) {
			return nil, fmt.Errorf("FastCGI probe of %s: connection closed without a reply: %w", path, ErrProtocol)
		}
		return nil, fmt.Errorf("FastCGI probe of %s: no reply: %w", path, err)
	}
	if hdr[0] != fcgiVersion || (hdr[1] != fcgiGetValuesResult && hdr[1] != fcgiUnknownType) {
		return nil, fmt.Errorf("FastCGI probe of %s: reply starts with % x, not a FastCGI management record: %w", path, hdr[:], ErrProtocol)
	}
	n := int(binary.BigEndian.Uint16(hdr[4:6])) + int(hdr[6])
	content := make([]byte, n)
	if _, err := io.ReadFull(conn, content); err != nil {
		return nil, fmt.Errorf("FastCGI probe of %s: truncated record: %w", path, ErrProtocol)
	}
	vals := map[string]string{}
	if hdr[1] == fcgiGetValuesResult {
		var err error
		vals, err = parseNameValues(content[:binary.BigEndian.Uint16(hdr[4:6])])
		if err != nil {
			return nil, fmt.Errorf("FastCGI probe of %s: %w", path, err)
		}
	}
	return vals, nil
}

// FastCGI record types of a request.
const (
	fcgiBeginRequest = 1
	fcgiEndRequest   = 3
	fcgiParams       = 4
	fcgiStdin        = 5
	fcgiStdout       = 6
	fcgiResponder    = 1
	maxFCGIBody      = 1 << 20
)

// FastCGIRequest runs a real FastCGI request (GET urlPath) and returns the
// status from the CGI Status header (200 when absent) and up to 1 MiB of the
// body. Use it where FCGI_GET_VALUES is not answered (uWSGI's
// --fastcgi-socket) or to fetch a page; params adds or overrides CGI
// variables, e.g. SCRIPT_FILENAME for PHP-FPM. The error is nil only for a
// status below 500.
func FastCGIRequest(ctx context.Context, path, urlPath string, params map[string]string) (int, []byte, error) {
	msg, err := fcgiRequestMessage(urlPath, params)
	if err != nil {
		return 0, nil, err
	}
	conn, stop, err := dial(ctx, path)
	if err != nil {
		return 0, nil, err
	}
	defer conn.Close()
	defer stop()
	return fcgiRequestExchange(conn, path, msg)
}

// FastCGIRequestOn is FastCGIRequest on a connection the caller opened; it
// does not close it.
func FastCGIRequestOn(ctx context.Context, conn net.Conn, urlPath string, params map[string]string) (int, []byte, error) {
	msg, err := fcgiRequestMessage(urlPath, params)
	if err != nil {
		return 0, nil, err
	}
	path, stop, err := on(ctx, conn)
	if err != nil {
		return 0, nil, err
	}
	defer stop()
	return fcgiRequestExchange(conn, path, msg)
}

func fcgiRequestMessage(urlPath string, params map[string]string) ([]byte, error) {
	u, err := url.ParseRequestURI(urlPath)
	if err != nil || !strings.HasPrefix(urlPath, "/") {
		return nil, fmt.Errorf("probe path %q must be a URL path starting with /", urlPath)
	}
	vars := map[string]string{
		"GATEWAY_INTERFACE": "CGI/1.1",
		"REQUEST_METHOD":    "GET",
		"REQUEST_URI":       urlPath,
		"SCRIPT_NAME":       u.Path,
		"PATH_INFO":         u.Path,
		"QUERY_STRING":      u.RawQuery,
		"SERVER_PROTOCOL":   "HTTP/1.1",
		"SERVER_NAME":       Host,
		"SERVER_PORT":       "80",
		"HTTP_HOST":         Host,
		"HTTP_USER_AGENT":   "sockvisor-probe",
	}
	for k, v := range params {
		vars[k] = v
	}
	var pairs []byte
	for k, v := range vars {
		pairs = appendNVLen(pairs, len(k))
		pairs = appendNVLen(pairs, len(v))
		pairs = append(append(pairs, k...), v...)
	}
	if len(pairs) > 0xffff {
		return nil, fmt.Errorf("FastCGI parameters for %q are too long", urlPath)
	}
	var msg []byte
	msg = appendRecord(msg, fcgiBeginRequest, []byte{0, fcgiResponder, 0, 0, 0, 0, 0, 0})
	msg = appendRecord(msg, fcgiParams, pairs)
	msg = appendRecord(msg, fcgiParams, nil)
	msg = appendRecord(msg, fcgiStdin, nil)
	return msg, nil
}

func fcgiRequestExchange(conn net.Conn, path string, msg []byte) (int, []byte, error) {
	if _, err := conn.Write(msg); err != nil {
		return 0, nil, fmt.Errorf("sending FastCGI request to %s: %w", path, err)
	}
	var out []byte
	for {
		var hdr [8]byte
		if _, err := io.ReadFull(conn, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) {
				return 0, nil, fmt.Errorf("FastCGI request to %s: connection closed before the end of the response: %w", path, ErrProtocol)
			}
			return 0, nil, fmt.Errorf("FastCGI request to %s: %w", path, err)
		}
		if hdr[0] != fcgiVersion {
			return 0, nil, fmt.Errorf("FastCGI request to %s: reply starts with % x, not a FastCGI record: %w", path, hdr[:], ErrProtocol)
		}
		clen := int(binary.BigEndian.Uint16(hdr[4:6]))
		content := make([]byte, clen+int(hdr[6]))
		if _, err := io.ReadFull(conn, content); err != nil {
			return 0, nil, fmt.Errorf("FastCGI request to %s: truncated record: %w", path, ErrProtocol)
		}
		switch hdr[1] {
		case fcgiStdout:
			if len(out) < maxFCGIBody {
				out = append(out, content[:clen]...)
			}
		case fcgiEndRequest:
			return cgiStatus(path, out)
		}
	}
}

// cgiStatus splits a CGI response into status and body.
func cgiStatus(path string, out []byte) (int, []byte, error) {
	head, body, ok := bytes.Cut(out, []byte("\r\n\r\n"))
	if !ok {
		head, body, ok = bytes.Cut(out, []byte("\n\n"))
	}
	if !ok {
		return 0, nil, fmt.Errorf("FastCGI request to %s: response has no header block: %w", path, ErrProtocol)
	}
	code, status := 200, "200 OK"
	for _, line := range strings.Split(string(head), "\n") {
		name, val, _ := strings.Cut(strings.TrimRight(line, "\r"), ":")
		if strings.EqualFold(strings.TrimSpace(name), "Status") {
			status = strings.TrimSpace(val)
			if _, err := fmt.Sscanf(status, "%d", &code); err != nil {
				return 0, nil, fmt.Errorf("FastCGI request to %s: bad Status header %q: %w", path, status, ErrProtocol)
			}
		}
	}
	if code >= 500 {
		return code, body, fmt.Errorf("FastCGI request to %s: backend answered %q: %w", path, status, ErrServerError)
	}
	return code, body, nil
}

func appendNVLen(b []byte, n int) []byte {
	if n < 128 {
		return append(b, byte(n))
	}
	return binary.BigEndian.AppendUint32(b, uint32(n)|0x80000000)
}

// appendRecord appends one record of request id 1, padded to 8 bytes.
func appendRecord(b []byte, typ byte, content []byte) []byte {
	pad := (8 - len(content)%8) % 8
	b = append(b, fcgiVersion, typ, 0, 1, byte(len(content)>>8), byte(len(content)), byte(pad), 0)
	b = append(b, content...)
	return append(b, make([]byte, pad)...)
}

// parseNameValues decodes FastCGI name-value pairs: lengths below 128 take
// one byte, longer ones four bytes big-endian with the top bit set.
func parseNameValues(b []byte) (map[string]string, error) {
	out := map[string]string{}
	readLen := func() (int, bool) {
		if len(b) == 0 {
			return 0, false
		}
		if b[0]&0x80 == 0 {
			n := int(b[0])
			b = b[1:]
			return n, true
		}
		if len(b) < 4 {
			return 0, false
		}
		n := int(binary.BigEndian.Uint32(b) & 0x7fffffff)
		b = b[4:]
		return n, true
	}
	for len(b) > 0 {
		nl, ok1 := readLen()
		vl, ok2 := readLen()
		if !ok1 || !ok2 || nl+vl > len(b) || nl < 0 || vl < 0 {
			return nil, fmt.Errorf("malformed name-value pairs: %w", ErrProtocol)
		}
		out[string(b[:nl])] = string(b[nl : nl+vl])
		b = b[nl+vl:]
	}
	return out, nil
}

// Detect guesses the protocol of the backend at path without running its
// application: it sends FCGI_GET_VALUES followed by CRLFCRLF, which a
// FastCGI server answers with a management record and an HTTP server
// rejects with a status line (the blank line ends the request). A uwsgi
// server drops the connection without a byte. The error is non-nil only when
// the socket could not be reached; evidence says what was seen.
func Detect(ctx context.Context, path string) (Kind, string, error) {
	conn, stop, err := dial(ctx, path)
	if err != nil {
		return KindUnknown, "", err
	}
	defer conn.Close()
	defer stop()
	msg := append(append([]byte{}, getValuesRecord...), "\r\n\r\n"...)
	if _, err := conn.Write(msg); err != nil {
		if errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) {
			return KindUWSGILikely, "connection closed before the probe was sent", nil
		}
		return KindUnknown, "", fmt.Errorf("sending detection probe to %s: %w", path, err)
	}
	var buf []byte
	chunk := make([]byte, 512)
	for {
		n, rerr := conn.Read(chunk)
		buf = append(buf, chunk[:n]...)
		if k, ev, done := classify(buf); done {
			return k, ev, nil
		}
		if rerr == nil {
			continue
		}
		var ne net.Error
		switch {
		case len(buf) > 0:
			return KindUnknown, fmt.Sprintf("unrecognised reply starting % x", buf[:min(len(buf), 16)]), nil
		case errors.As(rerr, &ne) && ne.Timeout():
			return KindUnknown, "no reply before the deadline (unknown protocol, or every worker busy)", nil
		case errors.Is(rerr, io.EOF) || errors.Is(rerr, syscall.ECONNRESET):
			return KindUWSGILikely, "connection closed without a reply, as uwsgi does for a packet with an unknown modifier", nil
		default:
			return KindUnknown, "", fmt.Errorf("reading detection reply from %s: %w", path, rerr)
		}
	}
}

// classify decides once buf holds a complete FastCGI record or an HTTP
// status line.
func classify(buf []byte) (Kind, string, bool) {
	if len(buf) >= 2 && buf[0] == fcgiVersion && (buf[1] == fcgiGetValuesResult || buf[1] == fcgiUnknownType) {
		if len(buf) < 8 {
			return "", "", false
		}
		clen := int(binary.BigEndian.Uint16(buf[4:6]))
		if len(buf) < 8+clen+int(buf[6]) {
			return "", "", false
		}
		if buf[1] == fcgiUnknownType {
			return KindFastCGI, "FastCGI FCGI_UNKNOWN_TYPE record", true
		}
		vals, err := parseNameValues(buf[8 : 8+clen])
		if err != nil {
			return KindFastCGI, "FastCGI FCGI_GET_VALUES_RESULT record (malformed pairs)", true
		}
		return KindFastCGI, "FastCGI FCGI_GET_VALUES_RESULT " + formatValues(vals), true
	}
	if bytes.HasPrefix(buf, []byte("HTTP/")) {
		if i := bytes.IndexByte(buf, '\n'); i >= 0 {
			return KindHTTP, "status line " + strings.TrimSpace(string(buf[:i])), true
		}
		if len(buf) > 1024 {
			return KindHTTP, "HTTP reply without an end to its status line", true
		}
		return "", "", false
	}
	if len(buf) == 0 || (len(buf) == 1 && buf[0] == fcgiVersion) || (len(buf) < 5 && bytes.HasPrefix([]byte("HTTP/"), buf)) {
		return "", "", false // could still become a record or a status line
	}
	return KindUnknown, fmt.Sprintf("unrecognised reply starting % x", buf[:min(len(buf), 16)]), true
}

func formatValues(vals map[string]string) string {
	var parts []string
	for _, k := range []string{"FCGI_MAX_CONNS", "FCGI_MAX_REQS", "FCGI_MPXS_CONNS"} {
		if v, ok := vals[k]; ok {
			parts = append(parts, k+"="+v)
		}
	}
	return "{" + strings.Join(parts, " ") + "}"
}
