package localcloud

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// The node's entrypoint (tools/images/node/entrypoint.sh) plays cloud-init: it reads what
// the emulator copies into /etc/microswarm before the first start.

// cloudConfig is the part of a #cloud-config document the emulator honours.
type cloudConfig struct {
	// SSHKeys holds host keys, e.g. ed25519_private/ed25519_public, as real cloud-init does.
	SSHKeys map[string]string `yaml:"ssh_keys"`
	// SSHAuthorizedKeys is added to root's authorized keys (root is DO's default user).
	SSHAuthorizedKeys []string `yaml:"ssh_authorized_keys"`
}

var hostKeyTypes = []string{"rsa", "ecdsa", "ed25519"}

// parseCloudConfig returns the cloud-config in userData; other kinds of user data (shell
// scripts, MIME) yield an empty config.
func parseCloudConfig(userData string) (cloudConfig, error) {
	var cc cloudConfig
	if !strings.HasPrefix(strings.TrimLeft(userData, " \t\r\n"), "#cloud-config") {
		return cc, nil
	}
	if err := yaml.Unmarshal([]byte(userData), &cc); err != nil {
		return cc, fmt.Errorf("user_data is not valid cloud-config YAML: %w", err)
	}
	for name := range cc.SSHKeys {
		typ, part, ok := strings.Cut(name, "_")
		if !ok || (part != "private" && part != "public" && part != "certificate") || !knownHostKeyType(typ) {
			return cc, fmt.Errorf("user_data ssh_keys: unsupported key %q", name)
		}
	}
	return cc, nil
}

func knownHostKeyType(typ string) bool {
	for _, t := range hostKeyTypes {
		if t == typ {
			return true
		}
	}
	return false
}

// seedFiles lists the files of /etc/microswarm for a droplet, keyed by path below it.
func seedFiles(authorizedKeys []string, registryMirror string, userData string) (map[string]seedFile, error) {
	cc, err := parseCloudConfig(userData)
	if err != nil {
		return nil, err
	}
	keys := append(append([]string{}, authorizedKeys...), cc.SSHAuthorizedKeys...)
	daemon, err := json.Marshal(map[string][]string{
		"registry-mirrors":    {"http://" + registryMirror},
		"insecure-registries": {registryMirror},
	})
	if err != nil {
		return nil, err
	}
	files := map[string]seedFile{
		"authorized_keys": {mode: 0o600, data: []byte(joinLines(keys))},
		"daemon.json":     {mode: 0o644, data: append(daemon, '\n')},
		"user-data":       {mode: 0o600, data: []byte(userData)},
	}
	for _, typ := range hostKeyTypes {
		private, public := cc.SSHKeys[typ+"_private"], cc.SSHKeys[typ+"_public"]
		if private == "" {
			continue
		}
		base := "host-keys/ssh_host_" + typ + "_key"
		files[base] = seedFile{mode: 0o600, data: []byte(ensureNewline(private))}
		if public != "" {
			files[base+".pub"] = seedFile{mode: 0o644, data: []byte(ensureNewline(public))}
		}
	}
	return files, nil
}

type seedFile struct {
	mode int64
	data []byte
}

// seedTar packs files as microswarm/<path> for unpacking into /etc.
func seedTar(files map[string]seedFile) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	now := time.Now()
	dirs := map[string]bool{"microswarm": true}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
		if dir, _, ok := strings.Cut(name, "/"); ok {
			dirs["microswarm/"+dir] = true
		}
	}
	sort.Strings(names)
	dirNames := make([]string, 0, len(dirs))
	for d := range dirs {
		dirNames = append(dirNames, d)
	}
	sort.Strings(dirNames)
	for _, d := range dirNames {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o700, ModTime: now}); err != nil {
			return nil, err
		}
	}
	for _, name := range names {
		f := files[name]
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: "microswarm/" + name, Mode: f.mode, Size: int64(len(f.data)), ModTime: now}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func joinLines(lines []string) string {
	var b strings.Builder
	for _, l := range lines {
		if l = strings.TrimSpace(l); l != "" {
			b.WriteString(l)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

func ensureNewline(s string) string {
	if strings.HasSuffix(s, "\n") {
		return s
	}
	return s + "\n"
}
