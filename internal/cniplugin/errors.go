package cniplugin

import (
	"errors"
	"fmt"

	"github.com/containernetworking/cni/pkg/types"
)

// Weft's own CNI error codes (the spec leaves 100 and up to plugins).
const (
	// CodeIfNameTaken: CNI_IFNAME already exists in the pod's namespace and
	// is not this container's weft attachment.
	CodeIfNameTaken uint = 100
	// CodeBridgeConflict: the bridge name is taken by an interface that is
	// not a bridge.
	CodeBridgeConflict uint = 101
	// CodeSubnetFull: every address of the node's subnet is leased.
	CodeSubnetFull uint = 102
	// CodeCheckFailed: CHECK found the attachment not as ADD made it.
	CodeCheckFailed uint = 103
	// CodeStore: the address store cannot be read or written.
	CodeStore uint = 104
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
