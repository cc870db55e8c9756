package nodestate

import (
	"errors"
	"fmt"
	"os"
)

// Remove deletes the node state from dataDir and returns what it removed;
// no file is not an error. Without it the plugin refuses new pods (it has
// no subnet to give them), which is what a node whose agent was removed
// needs. The plugin's IPAM leases, beside it, stay.
func Remove(dataDir string) ([]string, error) {
	p := Path(dataDir)
	if err := os.Remove(p); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("remove node state %s: %w", p, err)
	}
	return []string{p}, nil
}
