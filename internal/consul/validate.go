package consul

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
)

// ValidateAdvertiseIP accepts an address an agent can bind to and others can reach: an
// IP, but not 0.0.0.0 or :: (which Consul cannot advertise) nor a multicast address.
func ValidateAdvertiseIP(s string) error {
	if err := ValidateIP(s); err != nil {
		return err
	}
	ip := net.ParseIP(s)
	if ip.IsUnspecified() || ip.IsMulticast() {
		return fmt.Errorf("%q cannot be advertised: give the node's own (private) address", s)
	}
	return nil
}

var joinHostPattern = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9.-]{0,251}[a-zA-Z0-9])?$`)

// ValidateJoinAddr accepts a retry_join entry: IP, [IPv6], host name, each with an
// optional port, or a cloud auto-join string ("provider=digitalocean ...").
func ValidateJoinAddr(s string) error {
	if strings.Contains(s, "provider=") {
		return nil
	}
	host, port := s, ""
	if h, p, err := net.SplitHostPort(s); err == nil {
		host, port = h, p
	} else if strings.Count(s, ":") == 1 {
		return fmt.Errorf("%q is not HOST or HOST:PORT", s)
	}
	host = strings.Trim(host, "[]")
	if ip := net.ParseIP(host); ip != nil {
		if ip.IsUnspecified() {
			return fmt.Errorf("%q names no host to join", s)
		}
	} else if !joinHostPattern.MatchString(host) || looksNumeric(host) {
		return fmt.Errorf("%q is not an IP address or host name", host)
	}
	if strings.Contains(s, ":") && port == "" && net.ParseIP(strings.Trim(s, "[]")) == nil {
		return fmt.Errorf("%q: the port is empty", s)
	}
	if port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("%q: the port must be a number 1-65535", s)
		}
	}
	return nil
}

// looksNumeric reports whether s is only digits and dots: meant as an IPv4 address, so a
// host name it is not.
func looksNumeric(s string) bool {
	return strings.Trim(s, "0123456789.") == ""
}

// PortClash is two listeners of one agent on the same port.
type PortClash struct {
	Name, Other string // ports attribute names; Name is the later one in Consul's order
	Port        int
}

// PortClashes lists listeners that share a port (off listeners never clash).
func PortClashes(role Role, p Ports) []PortClash {
	named := []struct {
		name string
		port int
	}{{"http", p.HTTP}, {"dns", p.DNS}, {"serf_lan", p.SerfLAN}}
	if role == RoleServer {
		named = append(named, []struct {
			name string
			port int
		}{{"server", p.Server}, {"serf_wan", p.SerfWAN}, {"grpc_tls", p.GRPCTLS}}...)
	}
	var out []PortClash
	seen := map[int]string{}
	for _, n := range named {
		if n.port == PortDisabled {
			continue
		}
		if other, ok := seen[n.port]; ok {
			out = append(out, PortClash{Name: n.name, Other: other, Port: n.port})
			continue
		}
		seen[n.port] = n.name
	}
	return out
}

// BootstrapExpectWarning says why an even server count is a poor choice, or "" if odd.
func BootstrapExpectWarning(servers int) string {
	if servers < 2 || servers%2 == 1 {
		return ""
	}
	quorum := servers/2 + 1
	return fmt.Sprintf("%d servers need %d of them for a quorum and so tolerate the loss of %d, no more than %d servers would: "+
		"an even count adds raft traffic and a failure point without adding fault tolerance. Prefer %d or %d servers.",
		servers, quorum, servers-quorum, servers-1, servers-1, servers+1)
}

// TLSError is a fault in TLS material, with the field (ca_pem, cert_pem, key_pem) at fault.
type TLSError struct {
	Field string
	Err   error
}

func (e *TLSError) Error() string { return e.Field + ": " + e.Err.Error() }

// CheckTLS checks TLS material field by field: the CA parses, the certificate and key
// are a pair, and the CA signed the certificate.
func CheckTLS(t TLS) *TLSError {
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM([]byte(t.CAPEM)) {
		return &TLSError{"ca_pem", errors.New("holds no PEM certificate")}
	}
	block, _ := pem.Decode([]byte(t.CertPEM))
	if block == nil || block.Type != "CERTIFICATE" {
		return &TLSError{"cert_pem", errors.New("holds no PEM certificate")}
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return &TLSError{"cert_pem", err}
	}
	if _, err := tls.X509KeyPair([]byte(t.CertPEM), []byte(t.KeyPEM)); err != nil {
		return &TLSError{"key_pem", fmt.Errorf("is not the key of cert_pem: %w", err)}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return &TLSError{"cert_pem", fmt.Errorf("not signed by ca_pem: %w", err)}
	}
	return nil
}
