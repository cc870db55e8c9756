package netpolnft

import (
	"encoding/binary"
	"fmt"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// ruleInfo is what the applier and the metrics need of a rule: its chain,
// its tag, and its counter if it has one.
type ruleInfo struct {
	chain   string
	tag     string
	packets uint64
	bytes   uint64
}

// dumpRules lists every rule of the table in one netlink dump, reading
// only chain, user data and counter (the nftables library's GetRules
// needs one dump per chain, and decodes every expression).
func dumpRules() ([]ruleInfo, error) {
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, nil)
	if err != nil {
		return nil, fmt.Errorf("netlink netfilter: %w", err)
	}
	defer c.Close()
	attrs, err := netlink.MarshalAttributes([]netlink.Attribute{
		{Type: unix.NFTA_RULE_TABLE, Data: append([]byte(Table), 0)},
	})
	if err != nil {
		return nil, err
	}
	req := netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETRULE),
			Flags: netlink.Request | netlink.Dump,
		},
		// nfgenmsg: family, version, resource id.
		Data: append([]byte{unix.NFPROTO_IPV4, unix.NFNETLINK_V0, 0, 0}, attrs...),
	}
	msgs, err := c.Execute(req)
	if err != nil {
		return nil, fmt.Errorf("dump rules of ip %s: %w", Table, err)
	}
	var out []ruleInfo
	for _, m := range msgs {
		if len(m.Data) < 4 {
			continue
		}
		ad, err := netlink.NewAttributeDecoder(m.Data[4:])
		if err != nil {
			return nil, err
		}
		var r ruleInfo
		var table string
		for ad.Next() {
			switch ad.Type() {
			case unix.NFTA_RULE_TABLE:
				table = ad.String()
			case unix.NFTA_RULE_CHAIN:
				r.chain = ad.String()
			case unix.NFTA_RULE_USERDATA:
				r.tag = string(ad.Bytes())
			case unix.NFTA_RULE_EXPRESSIONS:
				ad.Nested(func(nd *netlink.AttributeDecoder) error {
					for nd.Next() {
						nd.Nested(func(ed *netlink.AttributeDecoder) error {
							r.readCounter(ed)
							return nil
						})
					}
					return nil
				})
			}
		}
		if err := ad.Err(); err != nil {
			return nil, fmt.Errorf("decode rule of ip %s: %w", Table, err)
		}
		if table == Table {
			out = append(out, r)
		}
	}
	return out, nil
}

// readCounter takes the values of a counter expression.
func (r *ruleInfo) readCounter(ed *netlink.AttributeDecoder) {
	name := ""
	var data []byte
	for ed.Next() {
		switch ed.Type() {
		case unix.NFTA_EXPR_NAME:
			name = ed.String()
		case unix.NFTA_EXPR_DATA:
			data = ed.Bytes()
		}
	}
	if name != "counter" || data == nil {
		return
	}
	cd, err := netlink.NewAttributeDecoder(data)
	if err != nil {
		return
	}
	cd.ByteOrder = binary.BigEndian
	for cd.Next() {
		switch cd.Type() {
		case unix.NFTA_COUNTER_PACKETS:
			r.packets = cd.Uint64()
		case unix.NFTA_COUNTER_BYTES:
			r.bytes = cd.Uint64()
		}
	}
}
