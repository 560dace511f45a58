// libcni-client drives CNI plugins through Debian's packaged libcni, the way a container runtime
// does, so the test suite can check our plugins against the real runtime-side library rather than
// against our own idea of it. Its command line follows upstream cnitool:
//
//	libcni-client add|check|del <net> <netns>
//	libcni-client gc|status <net> [<netns>]
//	libcni-client version <plugin-type>
//
// Environment: CNI_PATH (required), NETCONFPATH (default /etc/cni/net.d), CNI_IFNAME (default
// eth0), CNI_ARGS ("K=V;K2=V2"), CAP_ARGS (JSON object), CNI_CONTAINERID (default derived from the
// netns path as upstream does), CNI_CACHE_DIR (libcni's cache directory, default /var/lib/cni).
//
// Exit status: 0 on success, 1 when libcni or a plugin fails (stderr ends with "(CNI error code N)"
// when the plugin answered with a CNI error object), 2 for usage errors.
package main

import (
	"context"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"
)

const prog = "libcni-client"

func main() {
	os.Exit(run(os.Args[1:]))
}

func usage(msg string) int {
	fmt.Fprintf(os.Stderr, "%s: %s\nusage: %s add|check|del <net> <netns>\n       %s gc|status <net> [<netns>]\n       %s version <plugin-type>\n", prog, msg, prog, prog, prog)
	return 2
}

func run(argv []string) int {
	if len(argv) < 2 {
		return usage("missing arguments")
	}
	cmd, target := argv[0], argv[1]
	paths := filepath.SplitList(os.Getenv("CNI_PATH"))
	if len(paths) == 0 {
		return usage("CNI_PATH must name the plugin directories")
	}
	cni := libcni.NewCNIConfigWithCacheDir(paths, os.Getenv("CNI_CACHE_DIR"), nil)
	ctx := context.Background()

	if cmd == "version" {
		info, err := cni.GetVersionInfo(ctx, target)
		if err != nil {
			return fail(err)
		}
		out, _ := json.Marshal(map[string]interface{}{"supportedVersions": info.SupportedVersions()})
		fmt.Println(string(out))
		return 0
	}

	switch cmd {
	case "add", "check", "del":
		if len(argv) != 3 {
			return usage(cmd + " needs <net> <netns>")
		}
	case "gc", "status":
		if len(argv) > 3 {
			return usage(cmd + " takes <net> [<netns>]")
		}
	default:
		return usage(fmt.Sprintf("unknown command %q", cmd))
	}

	list, err := loadList(target)
	if err != nil {
		return fail(err)
	}
	rt, err := runtimeConf(argv[2:])
	if err != nil {
		return usage(err.Error())
	}

	switch cmd {
	case "add":
		result, err := cni.AddNetworkList(ctx, list, rt)
		if result != nil {
			if perr := result.Print(); perr != nil && err == nil {
				err = perr
			}
		}
		return fail(err)
	case "check":
		return fail(cni.CheckNetworkList(ctx, list, rt))
	case "del":
		return fail(cni.DelNetworkList(ctx, list, rt))
	case "gc":
		return fail(gc(ctx, cni, list, rt))
	default:
		return fail(status(ctx, cni, list))
	}
}

// loadList accepts a network name (looked up in NETCONFPATH as libcni does: .conflist files
// first, then single .conf/.json configs up-converted to a list) or a path to a config file.
func loadList(target string) (*libcni.NetworkConfigList, error) {
	if st, err := os.Stat(target); err == nil && !st.IsDir() {
		if strings.HasSuffix(target, ".conflist") {
			return libcni.ConfListFromFile(target)
		}
		conf, err := libcni.ConfFromFile(target)
		if err != nil {
			return nil, err
		}
		return libcni.ConfListFromConf(conf)
	}
	dir := os.Getenv("NETCONFPATH")
	if dir == "" {
		dir = "/etc/cni/net.d"
	}
	return libcni.LoadConfList(dir, target)
}

func runtimeConf(rest []string) (*libcni.RuntimeConf, error) {
	rt := &libcni.RuntimeConf{IfName: os.Getenv("CNI_IFNAME")}
	if rt.IfName == "" {
		rt.IfName = "eth0"
	}
	if len(rest) > 0 {
		abs, err := filepath.Abs(rest[0])
		if err != nil {
			return nil, err
		}
		rt.NetNS = abs
		// Upstream cnitool's container ID: "cnitool-" + first 10 bytes of sha512(netns path), in hex.
		sum := sha512.Sum512([]byte(abs))
		rt.ContainerID = "cnitool-" + hex.EncodeToString(sum[:10])
	}
	if id := os.Getenv("CNI_CONTAINERID"); id != "" {
		rt.ContainerID = id
	}
	if s := os.Getenv("CNI_ARGS"); s != "" {
		for _, pair := range strings.Split(s, ";") {
			kv := strings.Split(pair, "=")
			if len(kv) != 2 {
				return nil, fmt.Errorf("invalid CNI_ARGS pair %q", pair)
			}
			rt.Args = append(rt.Args, [2]string{kv[0], kv[1]})
		}
	}
	if s := os.Getenv("CAP_ARGS"); s != "" {
		if err := json.Unmarshal([]byte(s), &rt.CapabilityArgs); err != nil {
			return nil, fmt.Errorf("CAP_ARGS is not a JSON object: %v", err)
		}
	}
	return rt, nil
}

// This libcni (1.1.x) predates GC and STATUS, so they are done here the way newer libcni does them.

// gc deletes every cached attachment of the network (none is declared valid, as upstream cnitool
// does), then, for 1.1.0+ lists, sends GC to each plugin with an empty valid-attachments list.
func gc(ctx context.Context, cni *libcni.CNIConfig, list *libcni.NetworkConfigList, rt *libcni.RuntimeConf) error {
	var errs []string
	for _, cached := range cachedAttachments(list.Name) {
		att := *rt
		att.ContainerID, att.IfName, att.NetNS = cached.ContainerID, cached.IfName, cached.NetNS
		att.Args, att.CapabilityArgs = cached.CniArgs, cached.CapabilityArgs
		if err := cni.DelNetworkList(ctx, list, &att); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if ok, _ := version.GreaterThanOrEqualTo(list.CNIVersion, "1.1.0"); ok {
		none := []interface{}{}
		for _, plugin := range list.Plugins {
			extra := map[string]interface{}{"cni.dev/valid-attachments": none, "cni.dev/attachments": none}
			if err := execSimple(ctx, cni, "GC", list, plugin, extra); err != nil {
				errs = append(errs, err.Error())
			}
		}
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

// status asks each plugin of a 1.1.0+ list in turn; the first failure is the answer. Older lists
// have no STATUS: success without running anything, as newer libcni does.
func status(ctx context.Context, cni *libcni.CNIConfig, list *libcni.NetworkConfigList) error {
	if ok, _ := version.GreaterThanOrEqualTo(list.CNIVersion, "1.1.0"); !ok {
		return nil
	}
	for _, plugin := range list.Plugins {
		if err := execSimple(ctx, cni, "STATUS", list, plugin, nil); err != nil {
			return err
		}
	}
	return nil
}

// execSimple runs one plugin for a verb that has no result and no attachment (GC, STATUS):
// the plugin's config gets the list's name and version, and the attachment variables are empty.
func execSimple(ctx context.Context, cni *libcni.CNIConfig, command string, list *libcni.NetworkConfigList, plugin *libcni.NetworkConfig, extra map[string]interface{}) error {
	path, err := invoke.FindInPath(plugin.Network.Type, cni.Path)
	if err != nil {
		return err
	}
	values := map[string]interface{}{"name": list.Name, "cniVersion": list.CNIVersion}
	for k, v := range extra {
		values[k] = v
	}
	conf, err := libcni.InjectConf(plugin, values)
	if err != nil {
		return err
	}
	args := &invoke.Args{Command: command, Path: strings.Join(cni.Path, string(os.PathListSeparator))}
	return invoke.ExecPluginWithoutResult(ctx, path, conf.Bytes, args, nil)
}

type cacheEntry struct {
	Kind           string                 `json:"kind"`
	ContainerID    string                 `json:"containerId"`
	IfName         string                 `json:"ifName"`
	NetworkName    string                 `json:"networkName"`
	NetNS          string                 `json:"netns"`
	CniArgs        [][2]string            `json:"cniArgs"`
	CapabilityArgs map[string]interface{} `json:"capabilityArgs"`
}

func cachedAttachments(network string) []cacheEntry {
	dir := os.Getenv("CNI_CACHE_DIR")
	if dir == "" {
		dir = libcni.CacheDir
	}
	files, _ := filepath.Glob(filepath.Join(dir, "results", network+"-*"))
	var out []cacheEntry
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var e cacheEntry
		if json.Unmarshal(data, &e) == nil && e.Kind == "cniCacheV1" && e.NetworkName == network {
			out = append(out, e)
		}
	}
	return out
}

func fail(err error) int {
	if err == nil {
		return 0
	}
	var cniErr *types.Error
	if errors.As(err, &cniErr) {
		fmt.Fprintf(os.Stderr, "%s: %v (CNI error code %d)\n", prog, err, cniErr.Code)
	} else {
		fmt.Fprintf(os.Stderr, "%s: %v\n", prog, err)
	}
	return 1
}
