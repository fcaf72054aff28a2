package swarm

import "testing"

func TestCheckAdvertiseAddr(t *testing.T) {
	t.Parallel()
	for addr, valid := range map[string]bool{
		"10.10.0.5": true, "10.10.0.5:2377": true, "eth1": true, "fd00::5": true, "[fd00::5]:2377": true,
		"0.0.0.0": false, "0.0.0.0:2377": false, "::": false, "999.1.1.1": false, "10.10.0.5:0": false, "eth1 ": false,
	} {
		if err := CheckAdvertiseAddr(addr); (err == nil) != valid {
			t.Errorf("CheckAdvertiseAddr(%q) = %v, want valid=%v", addr, err, valid)
		}
	}
}

func TestCheckAddrPools(t *testing.T) {
	t.Parallel()
	cases := map[string]struct {
		pools []string
		index int
	}{
		"docker's default": {[]string{"10.0.0.0/8"}, -1},
		"two apart":        {[]string{"10.10.0.0/16", "10.20.0.0/16"}, -1},
		"IPv6":             {[]string{"10.10.0.0/16", "fd00::/8"}, 1},
		"overlapping":      {[]string{"10.0.0.0/8", "10.20.0.0/16"}, 1},
		"host bits set":    {[]string{"10.10.0.1/16"}, 0},
		"not a network":    {[]string{"ten"}, 0},
	}
	for name, tc := range cases {
		i, err := CheckAddrPools(tc.pools)
		if i != tc.index || (tc.index >= 0) != (err != nil) {
			t.Errorf("%s: CheckAddrPools(%v) = %d, %v; want entry %d at fault", name, tc.pools, i, err, tc.index)
		}
	}
}

func TestCheckSubnetSize(t *testing.T) {
	t.Parallel()
	pools := []string{"10.20.0.0/20"}
	for size, valid := range map[int]bool{24: true, 20: true, 29: true, 30: false, 16: false} {
		if err := CheckSubnetSize(pools, size); (err == nil) != valid {
			t.Errorf("CheckSubnetSize(%v, %d) = %v, want valid=%v", pools, size, err, valid)
		}
	}
}
