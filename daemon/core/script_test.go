package core

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

var rewrite = flag.Bool("rewrite", false, "rewrite the expected output of testdata/*.txt scripts")

// TestScripts runs the golden scripts in testdata. Each block is one or
// more commands, a "----" line and the expected output (Ready batches and
// status), ending at a blank line. Commands (key=value arguments):
//
//	init policy= d= gpus= t= ttl= mem= ctrs= keep-alive= imp=a+b (improvements)
//	register fn= name= mem= weight= prewarm=
//	arrive at= fn= inv=
//	ready at= ctr=          fail-ctr at= ctr= reason=
//	complete at= inv= gpu-time= bytes=
//	moved at= ctr= resident=true|false
//	tick at=
//	status
func TestScripts(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scripts: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) { runScript(t, file) })
	}
}

type scriptBlock struct {
	cmds []string
	want []string
}

func parseScript(t *testing.T, file string) []scriptBlock {
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var blocks []scriptBlock
	var cur *scriptBlock
	inWant := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.TrimSpace(line) == "":
			cur, inWant = nil, false
		case strings.HasPrefix(line, "#") && cur == nil:
		case line == "----":
			if cur == nil {
				t.Fatalf("%s: ---- without commands", file)
			}
			inWant = true
		default:
			if cur == nil {
				blocks = append(blocks, scriptBlock{})
				cur = &blocks[len(blocks)-1]
			}
			if inWant {
				cur.want = append(cur.want, line)
			} else {
				cur.cmds = append(cur.cmds, line)
			}
		}
	}
	return blocks
}

func runScript(t *testing.T, file string) {
	blocks := parseScript(t, file)
	var s *Scheduler
	var out strings.Builder
	for i := range blocks {
		b := &blocks[i]
		var got []string
		for _, cmd := range b.cmds {
			lines, next, err := scriptCommand(s, cmd)
			if err != nil {
				got = append(got, "error: "+err.Error())
			}
			s = next
			got = append(got, lines...)
		}
		if *rewrite {
			b.want = got
		} else if strings.Join(got, "\n") != strings.Join(b.want, "\n") {
			t.Errorf("%s: block %d (%s):\ngot:\n%s\nwant:\n%s", file, i+1, b.cmds[0], strings.Join(got, "\n"), strings.Join(b.want, "\n"))
		}
		out.WriteString(strings.Join(b.cmds, "\n") + "\n----\n")
		for _, l := range b.want {
			out.WriteString(l + "\n")
		}
		out.WriteString("\n")
	}
	if *rewrite {
		head := ""
		if data, err := os.ReadFile(file); err == nil {
			for _, l := range strings.SplitAfter(string(data), "\n") {
				if !strings.HasPrefix(l, "#") {
					break
				}
				head += l
			}
		}
		if err := os.WriteFile(file, []byte(head+out.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func scriptCommand(s *Scheduler, line string) ([]string, *Scheduler, error) {
	fields := strings.Fields(line)
	args := map[string]string{}
	for _, f := range fields[1:] {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return nil, s, fmt.Errorf("argument %q is not key=value", f)
		}
		args[k] = v
	}
	dur := func(k string) time.Duration {
		d, err := time.ParseDuration(args[k])
		if err != nil && args[k] != "" {
			panic(fmt.Sprintf("bad duration %s=%q", k, args[k]))
		}
		return d
	}
	num := func(k string) float64 {
		if args[k] == "" {
			return 0
		}
		v, err := strconv.ParseFloat(args[k], 64)
		if err != nil {
			panic(fmt.Sprintf("bad number %s=%q", k, args[k]))
		}
		return v
	}
	at := Time(dur("at"))
	var err error
	switch fields[0] {
	case "init":
		cfg := Config{Policy: Policy(args["policy"]), D: int(num("d")), GPUs: int(num("gpus")), T: dur("t"),
			GPUMemBytes: int64(num("mem")), ContainersPerGPU: int(num("ctrs")), KeepAlive: dur("keep-alive")}
		if _, ok := args["ttl"]; ok {
			cfg.TTL, cfg.TTLSet = num("ttl"), true
		}
		if _, ok := args["hold-cold"]; ok {
			cfg.HoldColdSlot = true
		}
		if v, ok := args["imp"]; ok {
			cfg.ImprovementsSet = true
			for _, name := range strings.Split(v, "+") {
				switch name {
				case "memory":
					cfg.Improvements.MemoryAware = true
				case "costttl":
					cfg.Improvements.CostAwareTTL = true
				case "scalet":
					cfg.Improvements.ScaleT = true
				case "waitbusy":
					cfg.Improvements.WaitForBusy = true
				case "prefetch":
					cfg.Improvements.PrefetchAhead = true
				case "retag":
					cfg.Improvements.Retag = true
				case "partialevict":
					cfg.Improvements.PartialEvict = true
				case "keeplong":
					cfg.Improvements.KeepLong = true
				case "nocoldahead":
					cfg.Improvements.NoColdAhead = true
				case "none":
				default:
					return nil, s, fmt.Errorf("unknown improvement %q", name)
				}
			}
		}
		s, err = New(cfg)
		return nil, s, err
	case "register":
		ev := Register(FnID(num("fn")), args["name"], num("weight"), int64(num("mem")))
		ev.Prewarm = int(num("prewarm"))
		err = s.Step(at, ev)
	case "arrive":
		err = s.Step(at, Arrived(InvID(num("inv")), FnID(num("fn"))))
	case "ready":
		err = s.Step(at, ContainerReady(CtrID(num("ctr"))))
	case "fail-ctr":
		err = s.Step(at, ContainerFailed(CtrID(num("ctr")), args["reason"]))
	case "complete":
		err = s.Step(at, Completed(InvID(num("inv")), dur("gpu-time"), int64(num("bytes"))))
	case "moved":
		err = s.Step(at, MemoryMoved(CtrID(num("ctr")), args["resident"] == "true"))
	case "tick":
		s.Tick(at)
	case "status":
		return statusLines(s), s, nil
	default:
		return nil, s, fmt.Errorf("unknown command %q", fields[0])
	}
	if err != nil {
		return nil, s, err
	}
	return readyLines(s), s, nil
}

func readyLines(s *Scheduler) []string {
	rd := s.Ready()
	var out []string
	for _, c := range rd.Changes {
		out = append(out, fmt.Sprintf("flow %s: %v -> %v", s.flows[c.Fn].name, c.From, c.To))
	}
	for _, a := range rd.Actions {
		out = append(out, a.String())
	}
	if rd.WakeAt != Never {
		out = append(out, "wake-at "+rd.WakeAt.String())
	}
	return out
}

func statusLines(s *Scheduler) []string {
	st := s.Status()
	out := []string{fmt.Sprintf("V=%.3f T=%.3f queued=%d", st.VirtualTime, st.Throttle, st.Queued)}
	for _, f := range st.Flows {
		out = append(out, fmt.Sprintf("  %s %v q=%d in-flight=%d S=%.3f F=%.3f tau=%.3f resident=%d idle=%d starting=%d",
			f.Name, f.State, f.Queued, f.InFlight, f.S, f.F, f.Tau, f.Resident, f.Idle, f.Starting))
	}
	for _, g := range st.GPUs {
		out = append(out, fmt.Sprintf("  gpu%d slots=%d resident=%d containers=%d", g.Index, g.SlotsUsed, g.ResidentBytes, g.Containers))
	}
	return out
}
