package netpolnft

import (
	"fmt"
	"strings"
)

// DropLog configures the logging of dropped packets: each verdict chain
// (and the chain that drops the packets of pods without verdicts) hands
// at most Rate of its dropped packets a second to NFLOG group Group, with
// the chain's name as the log prefix, for the agent to read and describe
// (package droplog). Rate 0 logs nothing.
type DropLog struct {
	Rate  uint32
	Group uint16
}

// LogPrefixUnknown is the log prefix of packets dropped because a local
// pod has no verdicts yet (its address is unknown to the agent).
const LogPrefixUnknown = "unknown"

// tagLog tags a log rule; the rest of the tag is DropLog.spec.
const tagLog = "log:"

// spec is the configuration as a rule tag carries it ("" for none).
func (l DropLog) spec() string {
	if l.Rate == 0 {
		return ""
	}
	return fmt.Sprintf("%d/%d", l.Rate, l.Group)
}

// splitLog separates a chain's log rule tags from the rest and returns
// the chain's log spec: "" without log rules, the spec when they all
// carry one, "?" when they disagree (rewritten at the next apply).
func splitLog(tags []string) (spec string, rest []string) {
	first := true
	for _, t := range tags {
		s, ok := strings.CutPrefix(t, tagLog)
		if !ok {
			rest = append(rest, t)
			continue
		}
		if first {
			spec, first = s, false
		} else if s != spec {
			spec = "?"
		}
	}
	return spec, rest
}
