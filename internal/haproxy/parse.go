package haproxy

import (
	"encoding/csv"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// trimAnswer drops the empty line HAProxy ends every answer with.
func trimAnswer(raw string) string {
	return strings.TrimSuffix(strings.TrimSuffix(raw, "\n"), "\n")
}

// complaint turns an answer that is not the expected table into a CommandError.
func complaint(cmd, out string) error {
	msg := firstLine(out)
	if msg == "" {
		return &CommandError{Command: cmd, Message: ErrNoAnswer.Error()}
	}
	return &CommandError{Command: cmd, Message: msg}
}

func parseShowMap(cmd, out string) ([]MapEntry, error) {
	entries := []MapEntry{}
	for line := range strings.SplitSeq(out, "\n") {
		if line == "" {
			continue
		}
		// Entries start with their reference, e.g. 0x55a5f3e7f0b0; anything else is
		// HAProxy complaining ("Unknown map identifier...").
		fields := strings.SplitN(line, " ", 3)
		if !strings.HasPrefix(fields[0], "0x") || len(fields) < 2 {
			return nil, complaint(cmd, out)
		}
		entry := MapEntry{ID: fields[0], Key: fields[1]}
		if len(fields) == 3 {
			entry.Value = fields[2]
		}
		entries = append(entries, entry)
	}
	return entries, nil
}

// ProxyType is the kind of a `show stat` row.
type ProxyType int

const (
	TypeFrontend ProxyType = 0
	TypeBackend  ProxyType = 1
	TypeServer   ProxyType = 2
	TypeListener ProxyType = 3
)

func (t ProxyType) String() string {
	switch t {
	case TypeFrontend:
		return "frontend"
	case TypeBackend:
		return "backend"
	case TypeServer:
		return "server"
	case TypeListener:
		return "listener"
	}
	return "type " + strconv.Itoa(int(t))
}

// StatRow is one row of `show stat`: a frontend, a backend, a server or a listener.
type StatRow struct {
	Proxy  string // pxname: the frontend or backend
	Server string // svname: a server, or FRONTEND / BACKEND
	Type   ProxyType
	// Status as HAProxy prints it: "UP", "DOWN", "MAINT", "DRAIN", "no check", "OPEN",
	// "MAINT (resolution)" for a server-template slot with no address, "UP 1/2" for a
	// server going down ("DOWN 1/2" going up).
	Status string
	// CheckStatus is the last health check's result ("L7OK", "L7STS", "L4CON", "INI"
	// before the first check), without the "* " HAProxy prefixes while one is running.
	CheckStatus string
	CheckCode   int    // HTTP status of the last check, 0 if none
	Address     string // ip:port of a server, "" for a slot with no address
	Weight      int

	CurrentSessions int64 // scur
	TotalSessions   int64 // stot
	HTTP2xx         int64 // hrsp_2xx
	HTTP5xx         int64 // hrsp_5xx
	ConnErrors      int64 // econ
	RespErrors      int64 // eresp
	Retries         int64 // wretr
	Redispatches    int64 // wredis
}

// Healthy reports whether a server takes traffic on the strength of a passed health
// check. "UP" alone is not enough: a server-template slot that has just been given an
// address by DNS shows "UP 1/2" with check status INI before its first check runs.
func (r StatRow) Healthy() bool {
	if r.Type != TypeServer || r.Status != "UP" {
		return false
	}
	switch r.CheckStatus {
	case "L7OK", "L7OKC", "L6OK", "L4OK":
		return true
	}
	return false
}

func parseShowStat(out string) ([]StatRow, error) {
	const cmd = "show stat"
	if !strings.HasPrefix(out, "# ") {
		return nil, complaint(cmd, out)
	}
	reader := csv.NewReader(strings.NewReader(strings.TrimPrefix(out, "# ")))
	reader.FieldsPerRecord = -1
	records, err := reader.ReadAll()
	if err != nil {
		return nil, fmt.Errorf("haproxy %q: parsing CSV: %w", cmd, err)
	}
	column := map[string]int{}
	for i, name := range records[0] {
		column[name] = i
	}
	for _, required := range []string{"pxname", "svname", "status", "type"} {
		if _, ok := column[required]; !ok {
			return nil, fmt.Errorf("haproxy %q: no %s column in %v", cmd, required, records[0])
		}
	}
	rows := make([]StatRow, 0, len(records)-1)
	for n, rec := range records[1:] {
		var parseErr error
		text := func(name string) string {
			if i, ok := column[name]; ok && i < len(rec) {
				return rec[i]
			}
			return ""
		}
		number := func(name string) int64 {
			s := text(name)
			if s == "" {
				return 0
			}
			v, err := strconv.ParseInt(s, 10, 64)
			if err != nil && parseErr == nil {
				parseErr = fmt.Errorf("haproxy %q: row %d, %s: %w", cmd, n+1, name, err)
			}
			return v
		}
		row := StatRow{
			Proxy:           text("pxname"),
			Server:          text("svname"),
			Type:            ProxyType(number("type")),
			Status:          text("status"),
			CheckStatus:     strings.TrimPrefix(text("check_status"), "* "),
			CheckCode:       int(number("check_code")),
			Address:         text("addr"),
			Weight:          int(number("weight")),
			CurrentSessions: number("scur"),
			TotalSessions:   number("stot"),
			HTTP2xx:         number("hrsp_2xx"),
			HTTP5xx:         number("hrsp_5xx"),
			ConnErrors:      number("econ"),
			RespErrors:      number("eresp"),
			Retries:         number("wretr"),
			Redispatches:    number("wredis"),
		}
		if parseErr != nil {
			return nil, parseErr
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// HealthyServers counts the servers of a backend that passed their health check.
func HealthyServers(rows []StatRow, backend string) int {
	n := 0
	for _, r := range rows {
		if r.Proxy == backend && r.Healthy() {
			n++
		}
	}
	return n
}

// OpState is a server's operational state in `show servers state`.
type OpState int

const (
	OpStopped  OpState = 0
	OpStarting OpState = 1
	OpRunning  OpState = 2
	OpStopping OpState = 3
)

// AdminFlags is a server's srv_admin_state bit field.
type AdminFlags int

const (
	AdminForcedMaint     AdminFlags = 0x01 // set server ... state maint
	AdminInheritedMaint  AdminFlags = 0x02 // tracks a server in maintenance
	AdminConfigMaint     AdminFlags = 0x04 // "disabled" in the config
	AdminForcedDrain     AdminFlags = 0x08 // set server ... state drain
	AdminInheritedDrain  AdminFlags = 0x10
	AdminResolutionMaint AdminFlags = 0x20 // no address from DNS (an empty template slot)
	AdminHostnameMaint   AdminFlags = 0x40
)

// InMaintenance reports any kind of maintenance.
func (f AdminFlags) InMaintenance() bool {
	return f&(AdminForcedMaint|AdminInheritedMaint|AdminConfigMaint|AdminResolutionMaint|AdminHostnameMaint) != 0
}

// Draining reports a forced or inherited drain.
func (f AdminFlags) Draining() bool { return f&(AdminForcedDrain|AdminInheritedDrain) != 0 }

// ServerState is one row of `show servers state`.
type ServerState struct {
	Backend    string
	Server     string
	Address    string // "" when the slot has no address
	Port       int
	FQDN       string // the name server-template resolves
	OpState    OpState
	AdminState AdminFlags
	Weight     int // srv_uweight
	// SinceLastChange is srv_time_since_last_change.
	SinceLastChange time.Duration
}

func parseServersState(cmd, out string) ([]ServerState, error) {
	lines := strings.Split(out, "\n")
	// The answer opens with the format version (1), then a "# be_id be_name ..." header.
	if len(lines) < 2 || strings.TrimSpace(lines[0]) != "1" || !strings.HasPrefix(lines[1], "# ") {
		return nil, complaint(cmd, out)
	}
	column := map[string]int{}
	for i, name := range strings.Fields(strings.TrimPrefix(lines[1], "# ")) {
		column[name] = i
	}
	for _, required := range []string{"be_name", "srv_name", "srv_addr", "srv_op_state", "srv_admin_state"} {
		if _, ok := column[required]; !ok {
			return nil, fmt.Errorf("haproxy %q: no %s column in %q", cmd, required, lines[1])
		}
	}
	states := []ServerState{}
	for n, line := range lines[2:] {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		var parseErr error
		text := func(name string) string {
			if i, ok := column[name]; ok && i < len(fields) && fields[i] != "-" {
				return fields[i]
			}
			return ""
		}
		number := func(name string) int {
			s := text(name)
			if s == "" {
				return 0
			}
			v, err := strconv.Atoi(s)
			if err != nil && parseErr == nil {
				parseErr = fmt.Errorf("haproxy %q: row %d, %s: %w", cmd, n+1, name, err)
			}
			return v
		}
		state := ServerState{
			Backend:         text("be_name"),
			Server:          text("srv_name"),
			Address:         text("srv_addr"),
			Port:            number("srv_port"),
			FQDN:            text("srv_fqdn"),
			OpState:         OpState(number("srv_op_state")),
			AdminState:      AdminFlags(number("srv_admin_state")),
			Weight:          number("srv_uweight"),
			SinceLastChange: time.Duration(number("srv_time_since_last_change")) * time.Second,
		}
		if parseErr != nil {
			return nil, parseErr
		}
		states = append(states, state)
	}
	return states, nil
}

// Info is what `show info` says about the running process.
type Info struct {
	Name    string // "HAProxy"
	Version string // "2.6.12-1+deb12u3"
	Pid     int
	Uptime  time.Duration
	// Fields holds every line as printed, for counters without a field here.
	Fields map[string]string
}

func parseShowInfo(cmd, out string) (Info, error) {
	info := Info{Fields: map[string]string{}}
	for line := range strings.SplitSeq(out, "\n") {
		key, value, ok := strings.Cut(line, ": ")
		if !ok {
			continue
		}
		info.Fields[key] = value
	}
	info.Name, info.Version = info.Fields["Name"], info.Fields["Version"]
	if info.Version == "" {
		return Info{}, complaint(cmd, out)
	}
	if pid, err := strconv.Atoi(info.Fields["Pid"]); err == nil {
		info.Pid = pid
	}
	if secs, err := strconv.ParseInt(info.Fields["Uptime_sec"], 10, 64); err == nil {
		info.Uptime = time.Duration(secs) * time.Second
	}
	return info, nil
}
