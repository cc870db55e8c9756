package lab

import "context"

// The lab's internals that its external tests (package lab_test) drive
// directly, to build a lab step by step.
var (
	Create        = create
	SegmentBridge = segmentBridge
)

func (l *Lab) BuildBase(ctx context.Context) error { return l.buildBase(ctx) }

func (s *State) Unwire(ulName string) error { return s.unwire(ulName) }
