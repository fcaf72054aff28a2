package registrator

import (
	"regexp"
	"strings"
)

// metadata is what a container says about its registration through registrator's
// SERVICE_* keys, lowercased without the prefix: SERVICE_CHECK_HTTP -> check_http.
// byPort holds SERVICE_<port>_<KEY>, which wins over the plain key for that port.
type metadata struct {
	plain  map[string]string
	byPort map[string]map[string]string
}

// portKey matches SERVICE_<port>_<KEY>: the port is all digits.
var portKey = regexp.MustCompile(`^([0-9]+)_(.+)$`)

// readMetadata collects SERVICE_* keys from the sources in rising precedence: a later
// source overrides an earlier one (env, then the swarm service's labels, then the
// container's labels, as registrator lets labels win over env).
func readMetadata(env []string, labelSets ...map[string]string) metadata {
	md := metadata{plain: map[string]string{}, byPort: map[string]map[string]string{}}
	set := func(key, value string) {
		rest, ok := strings.CutPrefix(key, "SERVICE_")
		if !ok || rest == "" {
			return
		}
		rest = strings.ToLower(rest)
		if m := portKey.FindStringSubmatch(rest); m != nil {
			if md.byPort[m[1]] == nil {
				md.byPort[m[1]] = map[string]string{}
			}
			md.byPort[m[1]][m[2]] = value
			return
		}
		md.plain[rest] = value
	}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		set(k, v)
	}
	for _, labels := range labelSets {
		for k, v := range labels {
			set(k, v)
		}
	}
	return md
}

// forPort merges the plain keys with the port's own, and reports which keys came from
// the port (a port-specific name is not suffixed with the port).
func (md metadata) forPort(port string) (values map[string]string, fromPort map[string]bool) {
	values = make(map[string]string, len(md.plain))
	fromPort = map[string]bool{}
	for k, v := range md.plain {
		values[k] = v
	}
	for k, v := range md.byPort[port] {
		values[k] = v
		fromPort[k] = true
	}
	return values, fromPort
}

// Keys with a meaning of their own; every other key goes into the service's Meta.
var knownKeys = map[string]bool{
	"name": true, "tags": true, "id": true, "ignore": true, "network": true,
}

// metaKey is what Consul accepts as a Meta key.
var metaKey = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// serviceMeta is the Meta of a registration: every SERVICE_* key without a meaning of
// its own. check_* keys configure checks (unsupported ones, such as check_script, are
// dropped rather than published).
func serviceMeta(values map[string]string) map[string]string {
	meta := map[string]string{}
	for k, v := range values {
		if knownKeys[k] || strings.HasPrefix(k, "check_") || !metaKey.MatchString(k) {
			continue
		}
		meta[k] = v
	}
	if len(meta) == 0 {
		return nil
	}
	return meta
}

// SplitTags splits a comma-separated tag list, dropping empty entries.
func SplitTags(s string) []string {
	var tags []string
	for _, t := range strings.Split(s, ",") {
		if t = strings.TrimSpace(t); t != "" {
			tags = append(tags, t)
		}
	}
	return tags
}
