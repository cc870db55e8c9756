package cnibench

import (
	"fmt"
	"io"
	"slices"
	"time"
)

// row is one plugin at one worker count, over all its rounds.
type row struct {
	plugin               string
	workers              int
	addP50, addP99       time.Duration
	delP50, delP99       time.Duration
	addPerSec, delPerSec float64
}

func summarize(name string, workers int, runs []run) row {
	var add, del []time.Duration
	var addRates, delRates []float64
	for _, r := range runs {
		add = append(add, r.add...)
		del = append(del, r.del...)
		addRates = append(addRates, float64(len(r.add))/r.addWall.Seconds())
		delRates = append(delRates, float64(len(r.del))/r.delWall.Seconds())
	}
	return row{
		plugin: name, workers: workers,
		addP50: quantile(add, 0.50), addP99: quantile(add, 0.99),
		delP50: quantile(del, 0.50), delP99: quantile(del, 0.99),
		addPerSec: median(addRates), delPerSec: median(delRates),
	}
}

func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.5) - 1
	return s[max(0, min(i, len(s)-1))]
}

func median(f []float64) float64 {
	s := slices.Clone(f)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

// report prints one line per plugin and worker count, then the ratios
// weft-cni/reference (below 1 is faster for latencies; above 1 is faster
// for pods/s).
func report(w io.Writer, rows []row) {
	fmt.Fprintf(w, "\n%-18s %7s %10s %10s %10s %10s %10s %10s\n", "plugin", "workers", "ADD p50", "ADD p99", "ADD pods/s", "DEL p50", "DEL p99", "DEL pods/s")
	for _, r := range rows {
		fmt.Fprintf(w, "%-18s %7d %10s %10s %10.1f %10s %10s %10.1f\n", r.plugin, r.workers,
			ms(r.addP50), ms(r.addP99), r.addPerSec, ms(r.delP50), ms(r.delP99), r.delPerSec)
	}
	fmt.Fprintln(w, "\nratio weft-cni / reference (latency: lower is better; pods/s: higher is better)")
	for i := 0; i+1 < len(rows); i += 2 {
		wft, ref := rows[i], rows[i+1]
		fmt.Fprintf(w, "  %d workers: ADD p50 %.2f  ADD p99 %.2f  DEL p50 %.2f  DEL p99 %.2f  ADD pods/s %.2fx  DEL pods/s %.2fx\n",
			wft.workers,
			ratio(wft.addP50, ref.addP50), ratio(wft.addP99, ref.addP99),
			ratio(wft.delP50, ref.delP50), ratio(wft.delP99, ref.delP99),
			wft.addPerSec/ref.addPerSec, wft.delPerSec/ref.delPerSec)
	}
}

func ratio(a, b time.Duration) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}
