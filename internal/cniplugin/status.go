package cniplugin

import (
	"errors"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
)

// cmdStatus reports ready only when an ADD could allocate now: the subnet
// is known (config or node state) and the store is writable with a free
// address. Anything else is code 50, plugin not available.
func cmdStatus(args *skel.CmdArgs) error {
	c, err := load(args.StdinData, true)
	if err != nil {
		var e *types.Error
		if errors.As(err, &e) && e.Code == types.ErrTryAgainLater {
			return types.NewError(types.ErrPluginNotAvailable, e.Msg, e.Details)
		}
		return err
	}
	store, err := openStore(c)
	if err != nil {
		return err
	}
	if err := store.Ready(); err != nil {
		return types.NewError(types.ErrPluginNotAvailable, "cannot allocate: "+err.Error(), "")
	}
	return nil
}
