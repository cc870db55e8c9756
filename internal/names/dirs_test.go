package names

import "testing"

func TestDirsWithDefaultsFillsOnlyWhatIsEmpty(t *testing.T) {
	for _, c := range []struct {
		name string
		in   Dirs
		want Dirs
	}{
		{"all empty", Dirs{}, DefaultDirs()},
		{"data given", Dirs{Data: "/d"}, Dirs{Data: "/d", Run: RunDir, CNIConf: CNIConfDir, CNIBin: CNIBinDir}},
		{"all given", Dirs{"/d", "/r", "/c", "/b"}, Dirs{"/d", "/r", "/c", "/b"}},
	} {
		if got := c.in.WithDefaults(); got != c.want {
			t.Errorf("%s: %+v.WithDefaults() = %+v, want %+v", c.name, c.in, got, c.want)
		}
	}
	// Or takes what the caller left empty from the other set first: doctor
	// prefers the running agent's directories to the standard ones.
	got := Dirs{Data: "/mine"}.Or(Dirs{Data: "/agent", Run: "/agent-run"}).WithDefaults()
	if want := (Dirs{Data: "/mine", Run: "/agent-run", CNIConf: CNIConfDir, CNIBin: CNIBinDir}); got != want {
		t.Errorf("Or then WithDefaults = %+v, want %+v", got, want)
	}
}
