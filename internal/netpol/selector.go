package netpol

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Matches reports whether labels satisfy the selector: every matchLabels
// pair and every expression (they are ANDed).
func (s *Selector) Matches(labels map[string]string) bool {
	for k, v := range s.MatchLabels {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	for _, r := range s.MatchExpressions {
		v, ok := labels[r.Key]
		switch r.Operator {
		case "In":
			if !ok || !slices.Contains(r.Values, v) {
				return false
			}
		case "NotIn":
			if ok && slices.Contains(r.Values, v) {
				return false
			}
		case "Exists":
			if !ok {
				return false
			}
		case "DoesNotExist":
			if ok {
				return false
			}
		default:
			// Decode refuses unknown operators; one that slipped through
			// selects nothing rather than everything.
			return false
		}
	}
	return true
}

// validate refuses what the API server would refuse.
func (s *Selector) validate() error {
	for _, r := range s.MatchExpressions {
		switch r.Operator {
		case "In", "NotIn":
			if len(r.Values) == 0 {
				return fmt.Errorf("selector key %q: operator %s needs values", r.Key, r.Operator)
			}
		case "Exists", "DoesNotExist":
			if len(r.Values) != 0 {
				return fmt.Errorf("selector key %q: operator %s takes no values", r.Key, r.Operator)
			}
		default:
			return fmt.Errorf("selector key %q: unknown operator %q", r.Key, r.Operator)
		}
	}
	return nil
}

// canonical is a text that two selectors share exactly when they select
// the same labels, used to name shared address sets.
func (s *Selector) canonical() string {
	if s == nil {
		return "-"
	}
	var parts []string
	for k, v := range s.MatchLabels {
		parts = append(parts, k+"="+v)
	}
	for _, r := range s.MatchExpressions {
		vals := slices.Clone(r.Values)
		sort.Strings(vals)
		parts = append(parts, r.Key+" "+r.Operator+" ("+strings.Join(vals, ",")+")")
	}
	sort.Strings(parts)
	return "{" + strings.Join(parts, ";") + "}"
}
