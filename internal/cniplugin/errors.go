package cniplugin

import (
	"errors"
	"fmt"

	"github.com/containernetworking/cni/pkg/types"
)

// Weft's own CNI error codes (the spec leaves 100 and up to plugins).
const (
	// ErrIfNameTaken: CNI_IFNAME already exists in the pod's namespace and
	// is not this container's weft attachment.
	ErrIfNameTaken uint = 100
	// ErrBridgeConflict: the bridge name is taken by an interface that is
	// not a bridge.
	ErrBridgeConflict uint = 101
	// ErrSubnetFull: every address of the node's subnet is leased.
	ErrSubnetFull uint = 102
	// ErrCheckFailed: CHECK found the attachment not as ADD made it.
	ErrCheckFailed uint = 103
	// ErrStore: the address store cannot be read or written.
	ErrStore uint = 104
)

func invalidConfig(msg string) *types.Error {
	return types.NewError(types.ErrInvalidNetworkConfig, msg, "")
}

func cniError(code uint, format string, a ...any) *types.Error {
	return types.NewError(code, fmt.Sprintf(format, a...), "")
}

// withCode gives err a CNI code unless it already carries one.
func withCode(code uint, err error) error {
	var e *types.Error
	if errors.As(err, &e) {
		return err
	}
	return types.NewError(code, err.Error(), "")
}

// withRollbackError adds a failed rollback to the error that caused it, in
// the CNI error's details (the runtime sees only the CNI error object).
func withRollbackError(err, rollback error) error {
	var e *types.Error
	if errors.As(err, &e) {
		details := "rollback failed, something may be left behind: " + rollback.Error()
		if e.Details != "" {
			details = e.Details + "; " + details
		}
		return types.NewError(e.Code, e.Msg, details)
	}
	return fmt.Errorf("%w (rollback failed, something may be left behind: %v)", err, rollback)
}
