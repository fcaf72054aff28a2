package haproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"
)

// Client speaks HAProxy's Runtime API (the "stats socket" CLI) in non-interactive mode:
// each command opens a connection, writes one line, and reads until HAProxy closes it.
// A Client holds no connection, so it is safe for concurrent use.
type Client struct {
	// Dial opens a connection to the admin socket: a local unix socket, or a forwarded
	// one (an SSH streamlocal channel).
	Dial func(ctx context.Context) (net.Conn, error)
	// Timeout bounds one command when ctx has no earlier deadline (default 10s).
	Timeout time.Duration
}

// NewUnixClient returns a Client for an admin socket reachable at a local path.
func NewUnixClient(socketPath string) *Client {
	return &Client{Dial: func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socketPath)
	}}
}

// CommandError is a complaint HAProxy answered in text ("Unknown map identifier", "No
// such server.", "entry not found."), which the protocol otherwise reports as success.
type CommandError struct {
	Command string
	Message string
}

func (e *CommandError) Error() string {
	return fmt.Sprintf("haproxy %q: %s", e.Command, e.Message)
}

// maxResponse caps what one command may return, so a confused peer cannot exhaust memory.
const maxResponse = 64 << 20

// Execute runs one command and returns HAProxy's answer as it came, without the empty
// line that ends every answer. It does not judge the answer; the typed methods do.
func (c *Client) Execute(ctx context.Context, cmd string) (string, error) {
	if strings.ContainsAny(cmd, "\n\r") {
		return "", fmt.Errorf("haproxy command %q: contains a line break", cmd)
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := c.Dial(ctx)
	if err != nil {
		return "", fmt.Errorf("haproxy %q: connecting to the admin socket: %w", cmd, err)
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	// A forwarded connection may ignore deadlines; closing it unblocks the read.
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()

	if _, err := io.WriteString(conn, cmd+"\n"); err != nil {
		return "", fmt.Errorf("haproxy %q: %w", cmd, contextErr(ctx, err))
	}
	out, err := io.ReadAll(io.LimitReader(conn, maxResponse+1))
	if err != nil {
		return "", fmt.Errorf("haproxy %q: reading the answer: %w", cmd, contextErr(ctx, err))
	}
	if len(out) > maxResponse {
		return "", fmt.Errorf("haproxy %q: answer larger than %d bytes", cmd, maxResponse)
	}
	return trimAnswer(string(out)), nil
}

// contextErr prefers the context's reason over the I/O error it caused.
func contextErr(ctx context.Context, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return ctxErr
	}
	// The conn's deadline is the context's, and may fire a moment before it.
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return context.DeadlineExceeded
	}
	return err
}

// executeQuiet runs a command whose success is an empty answer: any text is an error.
func (c *Client) executeQuiet(ctx context.Context, command string) error {
	out, err := c.Execute(ctx, command)
	if err != nil {
		return err
	}
	if msg := strings.TrimSpace(out); msg != "" {
		return &CommandError{Command: command, Message: firstLine(msg)}
	}
	return nil
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return strings.TrimSpace(line)
}

// command joins a verb and its arguments, refusing arguments the CLI would split or
// treat specially, rather than escaping them.
func command(verb string, args ...string) (string, error) {
	for _, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\n\r;\\'\"") {
			return "", fmt.Errorf("haproxy %s: argument %q is empty or holds a space, quote, backslash or ';'", verb, a)
		}
	}
	return strings.Join(append([]string{verb}, args...), " "), nil
}

// MapEntry is one line of `show map <map>`.
type MapEntry struct {
	ID    string // HAProxy's reference, e.g. 0x55a5f3e7f0b0
	Key   string
	Value string
}

// ShowMap lists the entries of a map, named by its file path as the config loads it
// or by "#<id>".
func (c *Client) ShowMap(ctx context.Context, mapName string) ([]MapEntry, error) {
	cmd, err := command("show map", mapName)
	if err != nil {
		return nil, err
	}
	out, err := c.Execute(ctx, cmd)
	if err != nil {
		return nil, err
	}
	return parseShowMap(cmd, out)
}

// MapValue returns the value of key in a map, with ok false when the key is absent.
func (c *Client) MapValue(ctx context.Context, mapName, key string) (value string, ok bool, err error) {
	entries, err := c.ShowMap(ctx, mapName)
	if err != nil {
		return "", false, err
	}
	for _, e := range entries {
		if e.Key == key {
			return e.Value, true, nil
		}
	}
	return "", false, nil
}

// SetMap changes the value of an existing key; a missing key is an error.
func (c *Client) SetMap(ctx context.Context, mapName, key, value string) error {
	cmd, err := command("set map", mapName, key, value)
	if err != nil {
		return err
	}
	return c.executeQuiet(ctx, cmd)
}

// AddMap adds an entry. HAProxy accepts duplicates: the first added wins on lookup.
func (c *Client) AddMap(ctx context.Context, mapName, key, value string) error {
	cmd, err := command("add map", mapName, key, value)
	if err != nil {
		return err
	}
	return c.executeQuiet(ctx, cmd)
}

// DelMap removes every entry of key; a missing key is an error.
func (c *Client) DelMap(ctx context.Context, mapName, key string) error {
	cmd, err := command("del map", mapName, key)
	if err != nil {
		return err
	}
	return c.executeQuiet(ctx, cmd)
}

// PutMap sets key to value, adding the entry when the map has no such key. The common
// case, an existing key, costs one command, so a switch stays one write.
func (c *Client) PutMap(ctx context.Context, mapName, key, value string) error {
	setErr := c.SetMap(ctx, mapName, key, value)
	var complaint *CommandError
	if !errors.As(setErr, &complaint) {
		return setErr
	}
	if _, ok, err := c.MapValue(ctx, mapName, key); err != nil || ok {
		return setErr
	}
	return c.AddMap(ctx, mapName, key, value)
}

// ShowStat returns every proxy, server and listener row of `show stat`.
func (c *Client) ShowStat(ctx context.Context) ([]StatRow, error) {
	out, err := c.Execute(ctx, "show stat")
	if err != nil {
		return nil, err
	}
	return parseShowStat(out)
}

// ShowServersState returns the state of every server of a backend ("" for all).
func (c *Client) ShowServersState(ctx context.Context, backend string) ([]ServerState, error) {
	cmd := "show servers state"
	if backend != "" {
		var err error
		if cmd, err = command(cmd, backend); err != nil {
			return nil, err
		}
	}
	out, err := c.Execute(ctx, cmd)
	if err != nil {
		return nil, err
	}
	return parseServersState(cmd, out)
}

// ServersStateFile returns `show servers state` as HAProxy writes it, for the
// server-state-file a reload reads, so the new process starts with the addresses and
// states the old one learned.
func (c *Client) ServersStateFile(ctx context.Context) (string, error) {
	const cmd = "show servers state"
	out, err := c.Execute(ctx, cmd)
	if err != nil {
		return "", err
	}
	if _, err := parseServersState(cmd, out); err != nil {
		return "", err
	}
	return out + "\n", nil
}

// AdminState is what `set server <b>/<s> state` accepts.
type AdminState string

const (
	// StateReady returns a server to normal operation.
	StateReady AdminState = "ready"
	// StateDrain keeps the connections a server has and sends it no new ones.
	StateDrain AdminState = "drain"
	// StateMaint takes a server out of the backend.
	StateMaint AdminState = "maint"
)

// SetServerState puts one server into an administrative state.
func (c *Client) SetServerState(ctx context.Context, backend, server string, state AdminState) error {
	switch state {
	case StateReady, StateDrain, StateMaint:
	default:
		return fmt.Errorf("haproxy set server: state %q: want ready, drain or maint", state)
	}
	cmd, err := command("set server", backend+"/"+server, "state", string(state))
	if err != nil {
		return err
	}
	return c.executeQuiet(ctx, cmd)
}

// ShowInfo returns the process's identity and counters.
func (c *Client) ShowInfo(ctx context.Context) (Info, error) {
	out, err := c.Execute(ctx, "show info")
	if err != nil {
		return Info{}, err
	}
	return parseShowInfo("show info", out)
}

// ErrNoAnswer is returned when a command that must answer got nothing: the socket's
// level is too low for it, or the peer is not HAProxy.
var ErrNoAnswer = errors.New("empty answer")
