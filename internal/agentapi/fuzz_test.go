package agentapi

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

// Whatever a local client sends to the agent's socket, the API answers
// with a status code and never panics: only GET /status and GET /peers
// exist, and what they answer is JSON.
func FuzzAPIRequest(f *testing.F) {
	for _, s := range []struct{ method, path, body string }{
		{"GET", "/status", ""}, {"GET", "/peers", ""}, {"POST", "/status", "{}"},
		{"GET", "/status/../peers", ""}, {"DELETE", "/peers", "x"}, {"GET", "/%zz", ""},
		{"GET", "//peers?x=1", ""}, {"PUT", "/", "\x00\xff"}, {"GET", "/policy", ""},
	} {
		f.Add(s.method, s.path, []byte(s.body))
	}
	h := Handler(fixedProvider{status: Status{Node: "n1"}, peers: []Peer{{Name: "n2"}}})
	f.Fuzz(func(t *testing.T, method, path string, body []byte) {
		req, err := http.NewRequest(method, "http://weft-agent/", bytes.NewReader(body))
		if err != nil {
			return // not a request a client could send
		}
		req.URL.Path = path
		req.RequestURI = ""
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code == http.StatusOK {
			if !(method == http.MethodGet || method == http.MethodHead) {
				t.Fatalf("%s %q answered 200", method, path)
			}
			if method == http.MethodGet && !json.Valid(rec.Body.Bytes()) {
				t.Fatalf("%s %q answered 200 with non-JSON %q", method, path, rec.Body.Bytes())
			}
		}
	})
}

// What `weft status` and `weft peers` read from the socket is parsed
// without panicking, whatever is on the other end.
func FuzzAPIAnswer(f *testing.F) {
	f.Add([]byte(`{"node":"n1","subnet":"10.244.1.0/24"}`))
	f.Add([]byte(`[{"name":"n2","underlayIP":"172.30.0.2"}]`))
	f.Add([]byte(`{"subnet":"10.244.1.0/99"}`))
	f.Add([]byte(`[{"underlayIP":"::1%eth0"}]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var s Status
		_ = json.Unmarshal(b, &s)
		var ps []Peer
		_ = json.Unmarshal(b, &ps)
	})
}
