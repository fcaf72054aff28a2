package localcloud

import (
	"archive/tar"
	"bytes"
	"cmp"
	"context"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"gopkg.in/yaml.v3"
)

// Where first boot leaves its traces, as cloud-init does on a droplet.
const (
	bootScriptPath   = "/var/lib/cloud/instance/scripts/runcmd"
	bootFinishedPath = "/var/lib/cloud/instance/boot-finished"
	bootOutputPath   = "/var/log/cloud-init-output.log"
)

// bootFile is one write_files entry.
type bootFile struct {
	Path        string `yaml:"path"`
	Content     string `yaml:"content"`
	Encoding    string `yaml:"encoding"`
	Permissions string `yaml:"permissions"`
	Owner       string `yaml:"owner"`
	Append      bool   `yaml:"append"`
}

// bootPlan is what a node does at first boot: files to write, then a script to run.
type bootPlan struct {
	files  []bootFile
	script string // empty: nothing to run
}

// planFirstBoot reads the parts of user data that cloud-init acts on after the host keys:
// write_files and runcmd of a #cloud-config, or a whole shell-script user data ("#!").
func planFirstBoot(userData string) (bootPlan, error) {
	trimmed := strings.TrimLeft(userData, " \t\r\n")
	if strings.HasPrefix(trimmed, "#!") {
		return bootPlan{script: userData}, nil
	}
	if !strings.HasPrefix(trimmed, "#cloud-config") {
		return bootPlan{}, nil
	}
	var doc struct {
		WriteFiles []bootFile `yaml:"write_files"`
		RunCmd     []any      `yaml:"runcmd"`
	}
	if err := yaml.Unmarshal([]byte(userData), &doc); err != nil {
		return bootPlan{}, fmt.Errorf("user_data is not valid cloud-config YAML: %w", err)
	}
	var plan bootPlan
	var script strings.Builder
	for _, f := range doc.WriteFiles {
		if !strings.HasPrefix(f.Path, "/") {
			return bootPlan{}, fmt.Errorf("write_files: path %q is not absolute", f.Path)
		}
		data, err := f.content()
		if err != nil {
			return bootPlan{}, err
		}
		if f.Append { // by the script, so what the file holds stays
			fmt.Fprintf(&script, "mkdir -p \"$(dirname %[2]s)\" && printf %%s %[1]s | base64 -d >> %[2]s\n", base64.StdEncoding.EncodeToString(data), shellQuote(f.Path))
		} else {
			plan.files = append(plan.files, f)
		}
		if f.Owner != "" && f.Owner != "root" && f.Owner != "root:root" {
			fmt.Fprintf(&script, "chown %s %s\n", shellQuote(f.Owner), shellQuote(f.Path))
		}
	}
	for i, c := range doc.RunCmd {
		switch cmd := c.(type) {
		case string: // run by the shell, as cloud-init does
			script.WriteString(cmd + "\n")
		case []any: // run as argv, without a shell
			words := make([]string, 0, len(cmd))
			for _, w := range cmd {
				words = append(words, shellQuote(fmt.Sprint(w)))
			}
			script.WriteString(strings.Join(words, " ") + "\n")
		default:
			return bootPlan{}, fmt.Errorf("runcmd entry %d is neither a string nor a list", i)
		}
	}
	if script.Len() > 0 {
		plan.script = "#!/bin/sh\n" + script.String()
	}
	return plan, nil
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// content decodes a write_files entry's content.
func (f bootFile) content() ([]byte, error) {
	switch f.Encoding {
	case "", "text/plain":
		return []byte(f.Content), nil
	case "b64", "base64":
		return base64.StdEncoding.DecodeString(strings.TrimSpace(f.Content))
	}
	return nil, fmt.Errorf("write_files %s: encoding %q is not supported (text or b64)", f.Path, f.Encoding)
}

// firstBoot writes the plan's files into the node and starts its script in the
// background, its output in bootOutputPath; bootFinishedPath appears when it is done.
func (n *nodeBackend) firstBoot(ctx context.Context, id string, plan bootPlan) error {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	now := time.Now()
	add := func(path string, mode int64, data []byte) error {
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(path, "/"), Mode: mode, Size: int64(len(data)), ModTime: now}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	for _, f := range plan.files {
		data, err := f.content()
		if err != nil {
			return err
		}
		mode := int64(0o644)
		if f.Permissions != "" {
			m, err := strconv.ParseInt(f.Permissions, 8, 32)
			if err != nil {
				return fmt.Errorf("write_files %s: permissions %q are not octal", f.Path, f.Permissions)
			}
			mode = m
		}
		if err := add(f.Path, mode, data); err != nil {
			return err
		}
	}
	script := cmp.Or(plan.script, "#!/bin/sh\n")
	if err := add(bootScriptPath, 0o755, []byte(script)); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	// The engine creates missing parent directories while unpacking.
	if err := n.docker.CopyToContainer(ctx, id, "/", &buf, container.CopyToContainerOptions{}); err != nil {
		return fmt.Errorf("writing the first-boot files: %w", err)
	}
	run := fmt.Sprintf("%s >>%s 2>&1; rc=$?; echo \"$(date -u +%%s) exit $rc\" > %s", bootScriptPath, bootOutputPath, bootFinishedPath)
	exec, err := n.docker.ContainerExecCreate(ctx, id, container.ExecOptions{Cmd: []string{"/bin/sh", "-c", run}})
	if err != nil {
		return fmt.Errorf("starting the first-boot script: %w", err)
	}
	if err := n.docker.ContainerExecStart(ctx, exec.ID, container.ExecStartOptions{Detach: true}); err != nil {
		return fmt.Errorf("starting the first-boot script: %w", err)
	}
	return nil
}
