// bench-worker runs commands for the benchmark from inside a network namespace and times them.
//
// Started once per side under `ip netns exec NODE bench-worker`, it stays in the node namespace, so
// the per-call cost of `ip netns exec` (a mount namespace and a sysfs remount, about 10 ms) is
// paid once and never lands in a measurement. Each request is one JSON line on stdin:
//
//	{"id":1,"argv":["/path/libcni-client","add","net.conflist","/var/run/netns/x"],"env":["K=V"],"stdin":""}
//
// and gets one JSON line back, in completion order (requests run concurrently):
//
//	{"id":1,"code":0,"wallNs":1234,"userUs":10,"sysUs":5,"maxRssKb":9000,"stdout":"...","stderr":"..."}
//
// wallNs is fork-to-exit wall time. The CPU times and maxRssKb come from wait4 on the child, so they
// cover the whole process tree it waited for (a libcni client and every plugin it ran): CPU summed,
// RSS the peak of the largest single process.
//
// With TSCNI_BENCH_WRAP_REAL=DIR in its environment it is instead a stand-in for a plugin (the
// benchmark links it under plugin names): it runs DIR/<its own name> with the same stdin, stdout,
// stderr and environment, and appends "<name> <command> <maxRssKb>" to $TSCNI_BENCH_WRAP_LOG.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

type request struct {
	ID    int      `json:"id"`
	Argv  []string `json:"argv"`
	Env   []string `json:"env"`
	Stdin string   `json:"stdin"`
}

type response struct {
	ID       int    `json:"id"`
	Code     int    `json:"code"`
	WallNs   int64  `json:"wallNs"`
	UserUs   int64  `json:"userUs"`
	SysUs    int64  `json:"sysUs"`
	MaxRssKb int64  `json:"maxRssKb"`
	Stdout   string `json:"stdout"`
	Stderr   string `json:"stderr"`
	Error    string `json:"error,omitempty"`
}

func main() {
	if real := os.Getenv("TSCNI_BENCH_WRAP_REAL"); real != "" {
		os.Exit(wrap(real))
	}
	var mu sync.Mutex
	out := json.NewEncoder(os.Stdout)
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 64<<20)
	var wg sync.WaitGroup
	for in.Scan() {
		var req request
		if err := json.Unmarshal(in.Bytes(), &req); err != nil {
			fmt.Fprintf(os.Stderr, "bench-worker: bad request: %v\n", err)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := runOne(req)
			mu.Lock()
			defer mu.Unlock()
			_ = out.Encode(res)
		}()
	}
	wg.Wait()
}

func runOne(req request) response {
	res := response{ID: req.ID}
	if len(req.Argv) == 0 {
		res.Code, res.Error = -1, "empty argv"
		return res
	}
	cmd := exec.Command(req.Argv[0], req.Argv[1:]...)
	cmd.Env = req.Env
	cmd.Stdin = bytes.NewReader([]byte(req.Stdin))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	res.WallNs = time.Since(start).Nanoseconds()
	res.Stdout, res.Stderr = stdout.String(), stderr.String()
	if cmd.ProcessState == nil {
		res.Code, res.Error = -1, err.Error()
		return res
	}
	res.Code = cmd.ProcessState.ExitCode()
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		res.UserUs = ru.Utime.Sec*1e6 + int64(ru.Utime.Usec)
		res.SysUs = ru.Stime.Sec*1e6 + int64(ru.Stime.Usec)
		res.MaxRssKb = ru.Maxrss
	}
	return res
}

func wrap(realDir string) int {
	name := filepath.Base(os.Args[0])
	cmd := exec.Command(filepath.Join(realDir, name), os.Args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	err := cmd.Run()
	if cmd.ProcessState == nil {
		fmt.Fprintf(os.Stderr, "bench-worker: %v\n", err)
		return 1
	}
	if log := os.Getenv("TSCNI_BENCH_WRAP_LOG"); log != "" {
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			if f, err := os.OpenFile(log, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644); err == nil {
				fmt.Fprintf(f, "%s %s %d\n", name, os.Getenv("CNI_COMMAND"), ru.Maxrss)
				f.Close()
			}
		}
	}
	return cmd.ProcessState.ExitCode()
}
