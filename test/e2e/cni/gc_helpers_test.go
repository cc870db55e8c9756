package cni_test

import (
	"testing"

	"github.com/containernetworking/cni/libcni"
)

type gcArgs = libcni.GCArgs

func libcniList(conf []byte) (*libcni.NetworkConfigList, error) {
	c, err := libcni.ConfFromBytes(conf)
	if err != nil {
		return nil, err
	}
	return libcni.ConfListFromConf(c)
}

func freshClient(t testing.TB, n *node) *libcni.CNIConfig {
	return libcni.NewCNIConfigWithCacheDir([]string{n.binDir, refPluginDir}, t.TempDir(), nil)
}
