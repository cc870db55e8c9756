// Package weft_test checks what the repository says about itself: the
// README's map of the code names every package, in the right part of
// the house, with what its own doc comment says it is.
package weft_test

import (
	"bytes"
	"flag"
	"fmt"
	"go/doc"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the README's map of the code")

const (
	module   = "github.com/weftnet/weft"
	mapBegin = "<!-- The map below is generated from the packages' doc comments: go test . -run TestMaintainersMap -update -->\n"
	mapEnd   = "<!-- end of the generated map -->\n"
)

// TestMaintainersMap regenerates the README's map of the code from the
// packages (`go list ./...`) and their doc comments, and fails when the
// README's differs: a package cannot be left out, nor described in the
// README otherwise than in its own doc comment.
func TestMaintainersMap(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	begin, end := bytes.Index(readme, []byte(mapBegin)), bytes.Index(readme, []byte(mapEnd))
	if begin < 0 || end < begin {
		t.Fatalf("README.md has no generated map between %q and %q", mapBegin, mapEnd)
	}
	want := renderMap(t, packages(t))
	have := string(readme[begin+len(mapBegin) : end])
	if have == want {
		return
	}
	if *update {
		out := append(append(append([]byte{}, readme[:begin+len(mapBegin)]...), want...), readme[end:]...)
		if err := os.WriteFile("README.md", out, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("README.md's map of the code is not what the packages say (go test . -run TestMaintainersMap -update rewrites it); want:\n%s", want)
}

// pkg is one package of the module: its directory relative to the
// module's root and what its doc comment says it is.
type pkg struct {
	dir, what string
}

// packages lists the module's packages with the first sentence of their
// doc comments (of their test files for a package of tests only).
func packages(t *testing.T) []pkg {
	t.Helper()
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}}\t{{.Dir}}\t{{.Doc}}\t", "./...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	var ps []pkg
	for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		f := strings.Split(line, "\t")
		if len(f) != 4 {
			t.Fatalf("go list printed %q", line)
		}
		if f[0] == module {
			continue // this test
		}
		what := f[2]
		if what == "" {
			what = testDoc(t, f[1])
		}
		if what == "" {
			t.Errorf("%s has no doc comment saying what it is", f[0])
		}
		ps = append(ps, pkg{dir: strings.TrimPrefix(f[0], module+"/") + "/", what: summary(what)})
	}
	return ps
}

// testDoc is the doc comment of a package of tests only.
func testDoc(t *testing.T, dir string) string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*_test.go"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range files {
		f, err := parser.ParseFile(token.NewFileSet(), name, nil, parser.ParseComments|parser.PackageClauseOnly)
		if err != nil {
			t.Fatal(err)
		}
		if f.Doc != nil {
			return new(doc.Package).Synopsis(f.Doc.Text())
		}
	}
	return ""
}

// summary is what a doc comment's first sentence says the package is or
// does, up to its first colon: "Package bridge owns the node's pod
// bridge (weft0): ..." is "owns the node's pod bridge (weft0)".
func summary(synopsis string) string {
	s := synopsis
	if i := strings.Index(s, ": "); i >= 0 {
		s = s[:i]
	}
	s = strings.TrimSuffix(s, ".")
	f := strings.SplitN(s, " ", 3)
	if len(f) == 3 && (f[0] == "Package" || f[0] == "Command") {
		s = f[2]
	}
	return s
}

// part says in which part of the house dir is: what ships on a node,
// the lab, or the tests.
func part(dir string) int {
	base := filepath.Base(dir)
	switch {
	case strings.HasPrefix(dir, "internal/testkit/"), strings.HasPrefix(dir, "test/"), strings.HasSuffix(base, "test"):
		return 2
	case strings.HasPrefix(dir, "internal/lab/"), dir == "cmd/weft-lab/", dir == "cmd/netcheck/", dir == "cmd/weft-pause/":
		return 1
	}
	return 0
}

var parts = []string{
	"What ships: the agent and its tools (weft), the plugin (weft-cni), the manifest",
	"The lab (weft-lab), its programs, benchmarks and images",
	"The tests and what they share",
}

func renderMap(t *testing.T, ps []pkg) string {
	t.Helper()
	var b strings.Builder
	for i, title := range parts {
		fmt.Fprintf(&b, "\n%s:\n\n", title)
		for _, p := range ps {
			if part(p.dir) == i {
				fmt.Fprintf(&b, "    %-35s %s\n", p.dir, p.what)
			}
		}
	}
	b.WriteString("\n")
	return b.String()
}
