package nfeval

import (
	"slices"
	"testing"
)

func TestPortRanges(t *testing.T) {
	c := complement(ranges{{30000, 30100}, {80, 80}, {0, 10}})
	if want := (ranges{{11, 79}, {81, 29999}, {30101, 65535}}); !slices.Equal(c, want) {
		t.Errorf("complement = %v, want %v", c, want)
	}
	if got := complement(ranges{{0, 65535}}); len(got) != 0 || got == nil {
		t.Errorf("complement of everything = %#v, want empty and not nil (nil means any port)", got)
	}
	if got := intersect(ranges{{30000, 32767}}, ranges{{100, 30010}, {32000, 40000}}); !slices.Equal(got, ranges{{30000, 30010}, {32000, 32767}}) {
		t.Errorf("intersect = %v", got)
	}
	for _, c := range []struct {
		rs   ranges
		port uint16
		want bool
	}{
		{nil, 4789, true}, // nil: any port
		{ranges{}, 4789, false},
		{ranges{{4789, 4789}}, 4789, true},
		{ranges{{30000, 32767}}, 29999, false},
	} {
		if got := c.rs.has(c.port); got != c.want {
			t.Errorf("%v.has(%d) = %v, want %v", c.rs, c.port, got, c.want)
		}
	}
}
