package apps

import (
	"bufio"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// uvicorn under a mount with WebSockets: the echo works through Apache,
// the app sees root_path = the mount and builds its URLs right, and 10
// restarts under load fail no request.
func TestUvicornWebSocket(t *testing.T) {
	need(t, "/usr/bin/uvicorn", "/usr/lib/python3/dist-packages/websockets")
	s := newStack(t)
	app := writeFile(t, s.dir, "app/asgi_app.py", readTestdata(t, "asgi_app.py"), 0o644)
	site, tlsBase := s.tlsSite("asgi.test")
	s.run(site + fmt.Sprintf(`backend "h2asgi" {
  preset       = "uvicorn"
  command      = ["/usr/bin/uvicorn", "--app-dir", %q, "--no-access-log", "asgi_app:app"]
  mount        = "/asgi/"
  websocket    = true
  user         = "www-data"
  stop_timeout = "10s"
}
`, filepath.Dir(app)))

	c := s.client()
	r := get(t, c, fmt.Sprintf("http://127.0.0.1:%d/asgi/info", s.Port()))
	want(t, r, 200)
	var info struct {
		RootPath string `json:"root_path"`
		Path     string `json:"path"`
		URL      string `json:"url"`
	}
	if err := json.Unmarshal([]byte(r.body), &info); err != nil {
		t.Fatalf("%v: %s", err, r)
	}
	wantURL := fmt.Sprintf("http://127.0.0.1:%d/asgi/info", s.Port())
	if info.RootPath != "/asgi" || info.Path != "/info" || info.URL != wantURL {
		t.Errorf("the app sees root_path %q, path %q, url %q; want /asgi, /info, %s", info.RootPath, info.Path, info.URL, wantURL)
	}
	// Over HTTPS the app builds https:// URLs: uvicorn honours Apache's
	// X-Forwarded-Proto on a Unix socket.
	r = get(t, s.tlsClient(), tlsBase+"/asgi/info")
	want(t, r, 200)
	if err := json.Unmarshal([]byte(r.body), &info); err != nil {
		t.Fatalf("%v: %s", err, r)
	}
	if info.URL != tlsBase+"/asgi/info" {
		t.Errorf("over HTTPS the app builds %q; want %s/asgi/info", info.URL, tlsBase)
	}

	ws := dialWebSocket(t, s.Port(), "/asgi/echo")
	for _, msg := range []string{"hello", "again"} {
		ws.send(t, msg)
		if got, want := ws.recv(t), "echo:"+msg+" root_path=/asgi"; got != want {
			t.Errorf("WebSocket echo %q; want %q", got, want)
		}
	}
	ws.close()

	s.restartUnderLoad("h2asgi", fmt.Sprintf("http://127.0.0.1:%d/asgi/info", s.Port()), 200*time.Millisecond)
	// A WebSocket opened after the restarts still echoes.
	ws = dialWebSocket(t, s.Port(), "/asgi/echo")
	ws.send(t, "after")
	if got := ws.recv(t); got != "echo:after root_path=/asgi" {
		t.Errorf("WebSocket echo after restarts %q", got)
	}
	ws.close()
}

func readTestdata(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// webSocket is a minimal RFC 6455 client: text frames of under 64 KiB.
type webSocket struct {
	c net.Conn
	r *bufio.Reader
}

func dialWebSocket(t *testing.T, port int, path string) *webSocket {
	t.Helper()
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	var nonce [16]byte
	rand.Read(nonce[:])
	key := base64.StdEncoding.EncodeToString(nonce[:])
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n", path, port, key)
	r := bufio.NewReader(c)
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		c.Close()
		t.Fatalf("WebSocket handshake on %s: %v", path, err)
	}
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-WebSocket-Accept") != base64.StdEncoding.EncodeToString(sum[:]) {
		c.Close()
		t.Fatalf("WebSocket handshake on %s: %s %v; want 101 with the right accept key", path, resp.Status, resp.Header)
	}
	return &webSocket{c: c, r: r}
}

func (w *webSocket) send(t *testing.T, msg string) {
	t.Helper()
	if len(msg) > 125 {
		t.Fatal("message too long for this client")
	}
	var mask [4]byte
	rand.Read(mask[:])
	frame := []byte{0x81, 0x80 | byte(len(msg))}
	frame = append(frame, mask[:]...)
	for i := range len(msg) {
		frame = append(frame, msg[i]^mask[i%4])
	}
	if _, err := w.c.Write(frame); err != nil {
		t.Fatalf("WebSocket send: %v", err)
	}
}

func (w *webSocket) recv(t *testing.T) string {
	t.Helper()
	var h [2]byte
	if _, err := io.ReadFull(w.r, h[:]); err != nil {
		t.Fatalf("WebSocket receive: %v", err)
	}
	n := int(h[1] & 0x7f)
	if n == 126 {
		var ext [2]byte
		if _, err := io.ReadFull(w.r, ext[:]); err != nil {
			t.Fatalf("WebSocket receive: %v", err)
		}
		n = int(binary.BigEndian.Uint16(ext[:]))
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(w.r, payload); err != nil {
		t.Fatalf("WebSocket receive: %v", err)
	}
	if op := h[0] & 0x0f; op != 1 {
		t.Fatalf("WebSocket frame opcode %d (%q); want a text frame", op, payload)
	}
	return string(payload)
}

func (w *webSocket) close() {
	w.c.Write([]byte{0x88, 0x80, 0, 0, 0, 0})
	w.c.Close()
}

// Puma serves a Rack app under a mount: Rack sees SCRIPT_NAME = the mount
// and PATH_INFO below it, and 10 restarts under load fail no request.
func TestPuma(t *testing.T) {
	need(t, "/usr/bin/puma")
	s := newStack(t)
	ru := writeFile(t, s.dir, "app/config.ru", readTestdata(t, "config.ru"), 0o644)
	site, tlsBase := s.tlsSite("rack.test")
	s.run(site + fmt.Sprintf(`backend "h2puma" {
  preset       = "puma"
  command      = ["/usr/bin/puma", "--environment", "production", %q]
  mount        = "/rack/"
  user         = "www-data"
  stop_timeout = "10s"
}
`, ru))
	c := s.client()
	u := fmt.Sprintf("http://127.0.0.1:%d/rack/x", s.Port())
	r := get(t, c, u)
	want(t, r, 200, "script_name=/rack path_info=/x", "url="+u)
	// Over HTTPS Puma sets rack.url_scheme from X-Forwarded-Proto.
	want(t, get(t, s.tlsClient(), tlsBase+"/rack/x"), 200, "scheme=https", "url="+tlsBase+"/rack/x")
	if !strings.Contains(s.log.String(), "Activated unix://") {
		t.Errorf("Puma did not adopt the inherited socket:\n%s", s.log.String())
	}
	s.restartUnderLoad("h2puma", u, 200*time.Millisecond)
}
