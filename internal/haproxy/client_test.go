package haproxy

import (
	"bufio"
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeSocket plays HAProxy's non-interactive CLI: read one line, write the answer and
// the empty line that ends it, close. answers maps a command to its answer; a command
// missing from it gets the "Unknown command" complaint.
type fakeSocket struct {
	mu       sync.Mutex
	answers  map[string]string
	commands []string
	// silent makes the fake read the command and never answer.
	silent bool
	// ignoreDeadlines makes connections behave like a forwarded channel that has none.
	ignoreDeadlines bool
}

type noDeadlineConn struct{ net.Conn }

func (noDeadlineConn) SetDeadline(time.Time) error { return nil }

func (f *fakeSocket) client() *Client {
	return &Client{Dial: func(ctx context.Context) (net.Conn, error) {
		ours, theirs := net.Pipe()
		go f.serve(theirs)
		if f.ignoreDeadlines {
			return noDeadlineConn{ours}, nil
		}
		return ours, nil
	}}
}

func (f *fakeSocket) serve(conn net.Conn) {
	defer conn.Close()
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return
	}
	cmd := strings.TrimSuffix(line, "\n")
	f.mu.Lock()
	f.commands = append(f.commands, cmd)
	answer, ok := f.answers[cmd]
	f.mu.Unlock()
	if f.silent {
		_, _ = conn.Read(make([]byte, 1)) // until the client gives up and closes
		return
	}
	if !ok {
		answer = "Unknown command, but maybe one of the following ones is a better match:\n  help [<command>]  : list matching or all commands\n"
	}
	_, _ = conn.Write([]byte(answer + "\n"))
}

func (f *fakeSocket) sent() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.commands...)
}

const testMap = "/usr/local/etc/haproxy/bluegreen.map"

func TestClientCommands(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		answers  map[string]string
		run      func(context.Context, *Client) error
		wantSent []string
		wantErr  string // the CommandError's message; "" for success
	}{
		"set map": {
			answers:  map[string]string{"set map " + testMap + " active green": ""},
			run:      func(ctx context.Context, c *Client) error { return c.SetMap(ctx, testMap, "active", "green") },
			wantSent: []string{"set map " + testMap + " active green"},
		},
		"set map missing key": {
			answers:  map[string]string{"set map " + testMap + " nokey green": answerEntryNotFound},
			run:      func(ctx context.Context, c *Client) error { return c.SetMap(ctx, testMap, "nokey", "green") },
			wantSent: []string{"set map " + testMap + " nokey green"},
			wantErr:  "entry not found.",
		},
		"set map unknown map": {
			answers:  map[string]string{"set map /nonexist.map a b": answerUnknownMap},
			run:      func(ctx context.Context, c *Client) error { return c.SetMap(ctx, "/nonexist.map", "a", "b") },
			wantSent: []string{"set map /nonexist.map a b"},
			wantErr:  "Unknown map identifier. Please use #<id> or <file>.",
		},
		"del map missing key": {
			answers:  map[string]string{"del map " + testMap + " extra": answerKeyNotFound},
			run:      func(ctx context.Context, c *Client) error { return c.DelMap(ctx, testMap, "extra") },
			wantSent: []string{"del map " + testMap + " extra"},
			wantErr:  "Key not found.",
		},
		"put map adds a missing key": {
			answers: map[string]string{
				"set map " + testMap + " canary 20": answerEntryNotFound,
				"show map " + testMap:               "0x1 active blue\n",
				"add map " + testMap + " canary 20": "",
			},
			run:      func(ctx context.Context, c *Client) error { return c.SetCanary(ctx, testMap, 20) },
			wantSent: []string{"set map " + testMap + " canary 20", "show map " + testMap, "add map " + testMap + " canary 20"},
		},
		"switch is one write": {
			answers:  map[string]string{"set map " + testMap + " active green": ""},
			run:      func(ctx context.Context, c *Client) error { return c.SetActive(ctx, testMap, Green) },
			wantSent: []string{"set map " + testMap + " active green"},
		},
		"set server drain": {
			answers:  map[string]string{"set server blue/blue1 state drain": ""},
			run:      func(ctx context.Context, c *Client) error { return c.SetServerState(ctx, "blue", "blue1", StateDrain) },
			wantSent: []string{"set server blue/blue1 state drain"},
		},
		"set server unknown server": {
			answers:  map[string]string{"set server blue/nosuch state maint": answerNoSuchServer},
			run:      func(ctx context.Context, c *Client) error { return c.SetServerState(ctx, "blue", "nosuch", StateMaint) },
			wantSent: []string{"set server blue/nosuch state maint"},
			wantErr:  "No such server.",
		},
		"set server unknown backend": {
			answers: map[string]string{"set server nosuch/blue1 state ready": answerNoSuchBackend},
			run: func(ctx context.Context, c *Client) error {
				return c.SetServerState(ctx, "nosuch", "blue1", StateReady)
			},
			wantSent: []string{"set server nosuch/blue1 state ready"},
			wantErr:  "No such backend.",
		},
		"unknown command": {
			run: func(ctx context.Context, c *Client) error {
				_, err := c.ShowServersState(ctx, "blue")
				return err
			},
			wantSent: []string{"show servers state blue"},
			wantErr:  "Unknown command, but maybe one of the following ones is a better match:",
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			fake := &fakeSocket{answers: tt.answers}
			err := tt.run(context.Background(), fake.client())
			checkErr(t, err, tt.wantErr)
			if got := fake.sent(); strings.Join(got, "|") != strings.Join(tt.wantSent, "|") {
				t.Errorf("sent %q, want %q", got, tt.wantSent)
			}
		})
	}
}

func TestClientRefusesArgumentsTheCLIWouldSplit(t *testing.T) {
	t.Parallel()
	tests := map[string]func(context.Context, *Client) error{
		"space": func(ctx context.Context, c *Client) error {
			return c.SetMap(ctx, testMap, "active", "green; shutdown frontend web")
		},
		"semicolon":  func(ctx context.Context, c *Client) error { return c.SetMap(ctx, testMap, "active", "green;x") },
		"newline":    func(ctx context.Context, c *Client) error { return c.DelMap(ctx, testMap, "a\nshutdown") },
		"empty":      func(ctx context.Context, c *Client) error { return c.AddMap(ctx, testMap, "", "x") },
		"bad state":  func(ctx context.Context, c *Client) error { return c.SetServerState(ctx, "blue", "blue1", "bogus") },
		"bad color":  func(ctx context.Context, c *Client) error { return c.SetActive(ctx, testMap, "red") },
		"bad canary": func(ctx context.Context, c *Client) error { return c.SetCanary(ctx, testMap, 101) },
	}
	for name, run := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			fake := &fakeSocket{}
			if err := run(context.Background(), fake.client()); err == nil {
				t.Fatal("accepted")
			}
			if sent := fake.sent(); len(sent) != 0 {
				t.Errorf("sent %q to HAProxy", sent)
			}
		})
	}
}

func TestClientHonoursContext(t *testing.T) {
	t.Parallel()
	for name, ignoreDeadlines := range map[string]bool{"deadline on the conn": false, "forwarded conn without deadlines": true} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			fake := &fakeSocket{silent: true, ignoreDeadlines: ignoreDeadlines}
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			start := time.Now()
			_, err := fake.client().ShowStat(ctx)
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("got %v, want a deadline error", err)
			}
			if elapsed := time.Since(start); elapsed > time.Second {
				t.Errorf("returned after %s, want about 100ms", elapsed)
			}
		})
	}
	t.Run("client timeout without a ctx deadline", func(t *testing.T) {
		t.Parallel()
		fake := &fakeSocket{silent: true}
		c := fake.client()
		c.Timeout = 100 * time.Millisecond
		if _, err := c.ShowInfo(context.Background()); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("got %v, want a deadline error", err)
		}
	})
}

func TestClientDialError(t *testing.T) {
	t.Parallel()
	refused := errors.New("connection refused")
	c := &Client{Dial: func(context.Context) (net.Conn, error) { return nil, refused }}
	if err := c.SetActive(context.Background(), testMap, Blue); !errors.Is(err, refused) {
		t.Fatalf("got %v, want the dial error", err)
	}
}

func TestClientReadsTables(t *testing.T) {
	t.Parallel()
	fake := &fakeSocket{answers: map[string]string{
		"show map " + testMap: captured(t, "show_map.txt") + "\n",
		"show stat":           captured(t, "show_stat.csv") + "\n",
		"show info":           captured(t, "show_info.txt") + "\n",
	}}
	c := fake.client()
	ctx := context.Background()
	routing, err := c.ReadRouting(ctx, testMap)
	if err != nil || routing != (Routing{Active: Green}) {
		t.Errorf("ReadRouting = %+v, %v; want green, canary 0", routing, err)
	}
	rows, err := c.ShowStat(ctx)
	if err != nil || HealthyServers(rows, "green") != 1 {
		t.Errorf("ShowStat: %d rows, %d healthy green, %v; want 1 healthy green", len(rows), HealthyServers(rows, "green"), err)
	}
	info, err := c.ShowInfo(ctx)
	if err != nil || !strings.HasPrefix(info.Version, "2.6.") {
		t.Errorf("ShowInfo = %+v, %v", info, err)
	}
}

func TestServersStateFile(t *testing.T) {
	t.Parallel()
	state := captured(t, "show_servers_state_all.txt")
	fake := &fakeSocket{answers: map[string]string{"show servers state": state + "\n"}}
	got, err := fake.client().ServersStateFile(context.Background())
	if err != nil || got != state+"\n" {
		t.Fatalf("got %q, %v; want HAProxy's answer with its final newline", got, err)
	}
	refusing := &fakeSocket{answers: map[string]string{"show servers state": "Permission denied\n"}}
	_, err = refusing.client().ServersStateFile(context.Background())
	checkErr(t, err, "Permission denied")
}

func TestApplyRouting(t *testing.T) {
	t.Parallel()
	showMap := "show map " + testMap
	tests := map[string]struct {
		answers    map[string]string
		wantSent   []string
		wantFiles  []string
		wantErr    bool
		failWrites bool
	}{
		"switch to green": {
			answers: map[string]string{
				showMap:                                "0x1 active blue\n0x2 canary 20\n",
				"set map " + testMap + " active green": "",
				"set map " + testMap + " canary 0":     "",
			},
			wantSent:  []string{showMap, "set map " + testMap + " active green", "set map " + testMap + " canary 0"},
			wantFiles: []string{"active green\ncanary 0\n"},
		},
		"proxy refuses: the file goes back": {
			answers: map[string]string{
				showMap:                                "0x1 active blue\n0x2 canary 20\n",
				"set map " + testMap + " active green": "Permission denied\n",
			},
			wantSent:  []string{showMap, "set map " + testMap + " active green", showMap, showMap},
			wantFiles: []string{"active green\ncanary 0\n", "active blue\ncanary 20\n"},
			wantErr:   true,
		},
		"file write fails: the proxy is not touched": {
			answers:    map[string]string{showMap: "0x1 active blue\n0x2 canary 0\n"},
			wantSent:   []string{showMap},
			wantErr:    true,
			failWrites: true,
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			fake := &fakeSocket{answers: tt.answers}
			var files []string
			write := func(_ context.Context, content string) error {
				if tt.failWrites {
					return errors.New("disk full")
				}
				files = append(files, content)
				return nil
			}
			err := fake.client().ApplyRouting(context.Background(), testMap, Routing{Active: Green}, write)
			if (err != nil) != tt.wantErr {
				t.Fatalf("error %v, want error %v", err, tt.wantErr)
			}
			if got := fake.sent(); strings.Join(got, "|") != strings.Join(tt.wantSent, "|") {
				t.Errorf("sent %q, want %q", got, tt.wantSent)
			}
			if strings.Join(files, "|") != strings.Join(tt.wantFiles, "|") {
				t.Errorf("wrote %q, want %q", files, tt.wantFiles)
			}
		})
	}
}
