package haproxy

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The testdata files are answers captured from HAProxy 2.6.12 (Debian's 2.6.12-1+deb12u3)
// running the rendered config with two blue and two green demo apps: blue1 drained,
// blue2 in maintenance, green2 failing its check, the other slots empty, green active.
func captured(t *testing.T, name string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return trimAnswer(string(raw))
}

// Complaints HAProxy 2.6.12 printed, verbatim, for commands that failed.
const (
	answerUnknownMap      = "Unknown map identifier. Please use #<id> or <file>.\n"
	answerEntryNotFound   = "entry not found.\n"
	answerKeyNotFound     = "Key not found.\n"
	answerNoSuchServer    = "No such server.\n"
	answerNoSuchBackend   = "No such backend.\n"
	answerCantFindBackend = "Can't find backend.\n"
)

func TestParseShowMap(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		answer  string
		want    []MapEntry
		wantErr string
	}{
		"captured": {
			answer: captured(t, "show_map.txt"),
			want: []MapEntry{
				{ID: "0x55a5f3e7f0b0", Key: "active", Value: "green"},
				{ID: "0x55a5f3e7f140", Key: "canary", Value: "0"},
			},
		},
		"empty map":       {answer: "", want: []MapEntry{}},
		"value spaces":    {answer: "0x1 k a b", want: []MapEntry{{ID: "0x1", Key: "k", Value: "a b"}}},
		"unknown map":     {answer: trimAnswer(answerUnknownMap + "\n"), wantErr: "Unknown map identifier. Please use #<id> or <file>."},
		"unknown command": {answer: captured(t, "unknown_command.txt"), wantErr: "Unknown command, but maybe one of the following ones is a better match:"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got, err := parseShowMap("show map x", tt.answer)
			checkErr(t, err, tt.wantErr)
			if tt.wantErr != "" {
				return
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d entries %+v, want %+v", len(got), got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("entry %d: got %+v, want %+v", i, got[i], tt.want[i])
				}
			}
		})
	}
}

// checkErr fails unless err is a *CommandError with message want, or nil when want is "".
func checkErr(t *testing.T, err error, want string) {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	var complaint *CommandError
	if !errors.As(err, &complaint) {
		t.Fatalf("got error %v, want a *CommandError %q", err, want)
	}
	if complaint.Message != want {
		t.Fatalf("got complaint %q, want %q", complaint.Message, want)
	}
}

func TestParseShowStat(t *testing.T) {
	t.Parallel()
	rows, err := parseShowStat(captured(t, "show_stat.csv"))
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]StatRow{}
	for _, r := range rows {
		byName[r.Proxy+"/"+r.Server] = r
	}
	if len(rows) != 24 {
		t.Errorf("got %d rows, want 24 (2 frontends, 2 backends, 20 slots)", len(rows))
	}
	tests := map[string]struct {
		want        StatRow
		wantHealthy bool
	}{
		"web/FRONTEND": {want: StatRow{Proxy: "web", Server: "FRONTEND", Type: TypeFrontend, Status: "OPEN", TotalSessions: 24, HTTP2xx: 24}},
		"blue/blue1": {want: StatRow{Proxy: "blue", Server: "blue1", Type: TypeServer, Status: "DRAIN", CheckStatus: "L7OK", CheckCode: 200,
			Address: "192.168.96.4:8080", Weight: 1, TotalSessions: 2, HTTP2xx: 2}},
		"blue/blue2": {want: StatRow{Proxy: "blue", Server: "blue2", Type: TypeServer, Status: "MAINT",
			Address: "192.168.96.2:8080", Weight: 1, TotalSessions: 2, HTTP2xx: 2}},
		"blue/blue3":   {want: StatRow{Proxy: "blue", Server: "blue3", Type: TypeServer, Status: "MAINT (resolution)", Weight: 1}},
		"blue/BACKEND": {want: StatRow{Proxy: "blue", Server: "BACKEND", Type: TypeBackend, Status: "DOWN", TotalSessions: 4, HTTP2xx: 4}},
		"green/green1": {want: StatRow{Proxy: "green", Server: "green1", Type: TypeServer, Status: "UP", CheckStatus: "L7OK", CheckCode: 200,
			Address: "192.168.96.3:8080", Weight: 1, TotalSessions: 10, HTTP2xx: 10}, wantHealthy: true},
		"green/green2": {want: StatRow{Proxy: "green", Server: "green2", Type: TypeServer, Status: "DOWN", CheckStatus: "L7STS", CheckCode: 503,
			Address: "192.168.96.5:8080", Weight: 1, TotalSessions: 10, HTTP2xx: 10}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got, ok := byName[name]
			if !ok {
				t.Fatalf("no row %s", name)
			}
			// Backend weights are sums; compare what the row is about.
			if tt.want.Type != TypeServer {
				got.Weight = 0
			}
			if got != tt.want {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
			if got.Healthy() != tt.wantHealthy {
				t.Errorf("Healthy() = %v, want %v", got.Healthy(), tt.wantHealthy)
			}
		})
	}
	if n := HealthyServers(rows, "green"); n != 1 {
		t.Errorf("HealthyServers(green) = %d, want 1", n)
	}
	if n := HealthyServers(rows, "blue"); n != 0 {
		t.Errorf("HealthyServers(blue) = %d, want 0 (drained and in maintenance)", n)
	}
}

func TestStatRowHealthy(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		row  StatRow
		want bool
	}{
		"passed check":             {StatRow{Type: TypeServer, Status: "UP", CheckStatus: "L7OK"}, true},
		"fresh DNS slot, no check": {StatRow{Type: TypeServer, Status: "UP 1/2", CheckStatus: "INI"}, false},
		"up, not yet checked":      {StatRow{Type: TypeServer, Status: "UP", CheckStatus: "INI"}, false},
		"going down":               {StatRow{Type: TypeServer, Status: "UP 1/2", CheckStatus: "L7STS"}, false},
		"no health check":          {StatRow{Type: TypeServer, Status: "no check"}, false},
		"backend up":               {StatRow{Type: TypeBackend, Status: "UP", CheckStatus: "L7OK"}, false},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if got := tt.row.Healthy(); got != tt.want {
				t.Errorf("Healthy(%+v) = %v, want %v", tt.row, got, tt.want)
			}
		})
	}
}

func TestParseShowStatErrors(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		answer  string
		wantErr string
	}{
		"unknown command": {captured(t, "unknown_command.txt"), "Unknown command, but maybe one of the following ones is a better match:"},
		"nothing":         {"", "empty answer"},
		"permission":      {"Permission denied", "Permission denied"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := parseShowStat(tt.answer)
			checkErr(t, err, tt.wantErr)
		})
	}
	if _, err := parseShowStat("# pxname,svname,status,type\nweb,FRONTEND,OPEN,zero\n"); err == nil {
		t.Error("a non-numeric type parsed without error")
	}
}

func TestParseServersState(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		file      string
		wantCount int
		check     map[string]ServerState
	}{
		"one backend": {
			file: "show_servers_state_blue.txt", wantCount: 10,
			check: map[string]ServerState{
				"blue/blue1": {Backend: "blue", Server: "blue1", Address: "192.168.96.4", Port: 8080, FQDN: "tasks.web-blue",
					OpState: OpRunning, AdminState: AdminForcedDrain, Weight: 1, SinceLastChange: 8 * time.Second},
				"blue/blue2": {Backend: "blue", Server: "blue2", Address: "192.168.96.2", Port: 8080, FQDN: "tasks.web-blue",
					OpState: OpStopped, AdminState: AdminForcedMaint, Weight: 1, SinceLastChange: time.Second},
				"blue/blue3": {Backend: "blue", Server: "blue3", Port: 8080, FQDN: "tasks.web-blue",
					OpState: OpStopped, AdminState: AdminResolutionMaint, Weight: 1, SinceLastChange: 17 * time.Second},
			},
		},
		"all backends": {
			file: "show_servers_state_all.txt", wantCount: 20,
			check: map[string]ServerState{
				"green/green1": {Backend: "green", Server: "green1", Address: "192.168.96.3", Port: 8080, FQDN: "tasks.web-green",
					OpState: OpRunning, Weight: 1, SinceLastChange: 17 * time.Second},
			},
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			states, err := parseServersState("show servers state", captured(t, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			if len(states) != tt.wantCount {
				t.Errorf("got %d servers, want %d", len(states), tt.wantCount)
			}
			found := map[string]ServerState{}
			for _, s := range states {
				found[s.Backend+"/"+s.Server] = s
			}
			for key, want := range tt.check {
				if got := found[key]; got != want {
					t.Errorf("%s:\ngot  %+v\nwant %+v", key, got, want)
				}
			}
		})
	}
	_, err := parseServersState("show servers state nosuch", trimAnswer(answerCantFindBackend+"\n"))
	checkErr(t, err, "Can't find backend.")
}

func TestAdminFlags(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		flags           AdminFlags
		maint, draining bool
	}{
		"ready":        {0, false, false},
		"forced drain": {AdminForcedDrain, false, true},
		"forced maint": {AdminForcedMaint, true, false},
		"empty slot":   {AdminResolutionMaint, true, false},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if tt.flags.InMaintenance() != tt.maint || tt.flags.Draining() != tt.draining {
				t.Errorf("%#x: maintenance %v draining %v, want %v %v", int(tt.flags), tt.flags.InMaintenance(), tt.flags.Draining(), tt.maint, tt.draining)
			}
		})
	}
}

func TestParseShowInfo(t *testing.T) {
	t.Parallel()
	info, err := parseShowInfo("show info", captured(t, "show_info.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if info.Name != "HAProxy" || info.Version != "2.6.12-1+deb12u3" || info.Pid != 7 {
		t.Errorf("got name %q version %q pid %d", info.Name, info.Version, info.Pid)
	}
	if info.Uptime <= 0 {
		t.Errorf("uptime %s, want > 0", info.Uptime)
	}
	if info.Fields["Nbthread"] != "2" {
		t.Errorf("Nbthread %q, want 2", info.Fields["Nbthread"])
	}
	_, err = parseShowInfo("show info", captured(t, "unknown_command.txt"))
	checkErr(t, err, "Unknown command, but maybe one of the following ones is a better match:")
}

func TestRoutingFromEntries(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		entries []MapEntry
		want    Routing
		wantErr bool
	}{
		"rendered":         {[]MapEntry{{Key: "active", Value: "green"}, {Key: "canary", Value: "20"}}, Routing{Green, 20}, false},
		"empty means blue": {nil, Routing{Blue, 0}, false},
		"first entry wins": {[]MapEntry{{Key: "active", Value: "green"}, {Key: "active", Value: "blue"}}, Routing{Green, 0}, false},
		"bad color":        {[]MapEntry{{Key: "active", Value: "red"}}, Routing{}, true},
		"bad canary":       {[]MapEntry{{Key: "canary", Value: "101"}}, Routing{}, true},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got, err := routingFromEntries("m", tt.entries)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("got %+v, %v; want %+v, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}
