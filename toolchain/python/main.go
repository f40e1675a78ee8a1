// Command pulumi-language-python is a small Python language host for the
// Pulumi engine, written for this repository's offline toolchain.
//
// Why it exists: upstream's host lives in its own Go module
// (github.com/pulumi/pulumi/sdk/python/cmd/pulumi-language-python/v3), which
// the module proxy reachable here does not serve (403 for every version). The
// parts that matter are in modules it does serve: the sdk/v3 module ships the
// Python toolchain logic (virtualenv/pip/uv/poetry resolution, package
// listing) and the `pulumi-language-python-exec` shim that actually runs the
// program. This host wires the two together over the LanguageRuntime gRPC
// protocol:
//
//   - Run: resolve the toolchain from the project's runtime options
//     (virtualenv, toolchain), then run `python pulumi-language-python-exec
//     --monitor ... PROGRAM` with PULUMI_CONFIG / PULUMI_CONFIG_SECRET_KEYS set,
//     exactly the contract the shim and the Python SDK expect.
//   - GetRequiredPackages: report the resource plugins declared by installed
//     Python packages (their pulumi-plugin.json), as upstream does.
//   - the `typechecker` runtime option (mypy, pyright): run over the program
//     directory before the program, failing the run on type errors.
//   - GetPluginInfo, About, GetProgramDependencies.
//   - shutdown as upstream's host: SIGINT (the engine's close) stops serving
//     and exits 0, even when SIGINT was ignored at start; so does an engine
//     unreachable for 5 minutes.
//
// Everything else (InstallDependencies, code generation, `pulumi new`
// prompts) answers Unimplemented; the engine treats that
// as "not supported by this host" and carries on.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/util/logging"
	"github.com/pulumi/pulumi/sdk/v3/go/common/util/rpcutil"
	"github.com/pulumi/pulumi/sdk/v3/go/common/version"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"github.com/pulumi/pulumi/sdk/v3/python/toolchain"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"
)

// Exit code the exec shim uses after it has already shown the user an
// actionable error message: the engine should bail without adding its own.
const userActionableExitCode = 32

func main() {
	// -v and --logtostderr, which the engine passes when it logs verbosely,
	// are registered on the default FlagSet by the logging package.
	var tracing, root string
	flag.StringVar(&tracing, "tracing", "", "Emit tracing to a Zipkin-compatible tracing endpoint")
	flag.StringVar(&root, "root", "", "Project root (accepted for compatibility, unused)")
	flag.Parse()
	logging.InitLogging(false, 0, false)

	var engineAddress string
	if args := flag.Args(); len(args) > 0 {
		engineAddress = args[0]
	}

	execShim, err := findExecShim()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}

	// As upstream's host (sdk/python/cmd/pulumi-language-python/main.go, main):
	// SIGINT, which the engine sends every plugin it closes before it kills
	// the group 5 s later (sdk/v3 go/common/resource/plugin/plugin.go, the
	// `kill` of ExecPlugin: cmdutil.InterruptChildren, then KillChildren),
	// stops serving and exits 0. NotifyContext installs a handler even when SIGINT was ignored
	// at start (a CI job or `cmd &` from a script), where Go's default would
	// leave it ignored and every closed host would cost those 5 s.
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt)
	cancelChannel := make(chan bool)
	go func() {
		<-ctx.Done()
		cancel() // deregister the handler
		close(cancelChannel)
	}()
	// Also as upstream: stop when the engine has been unreachable for 5 minutes.
	if engineAddress != "" {
		if err := rpcutil.Healthcheck(ctx, engineAddress, 5*time.Minute, cancel); err != nil {
			fmt.Fprintf(os.Stderr, "could not start health check host RPC server: %v\n", err)
			os.Exit(1)
		}
	}

	handle, err := rpcutil.ServeWithOptions(rpcutil.ServeOptions{
		Cancel: cancelChannel,
		Init: func(srv *grpc.Server) error {
			pulumirpc.RegisterLanguageRuntimeServer(srv, &host{
				execShim:      execShim,
				engineAddress: engineAddress,
				tracing:       tracing,
			})
			return nil
		},
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "could not start language host RPC server: %v\n", err)
		os.Exit(1)
	}
	// The engine reads the port from our first line of stdout.
	fmt.Printf("%d\n", handle.Port)
	if err := <-handle.Done; err != nil {
		fmt.Fprintf(os.Stderr, "language host RPC stopped serving: %v\n", err)
		os.Exit(1)
	}
}

// findExecShim locates pulumi-language-python-exec: next to this binary
// first (that is where toolchain/build.sh puts it), then on PATH.
func findExecShim() (string, error) {
	const name = "pulumi-language-python-exec"
	if self, err := os.Executable(); err == nil {
		if resolved, err := filepath.EvalSymlinks(self); err == nil {
			self = resolved
		}
		candidate := filepath.Join(filepath.Dir(self), name)
		if _, err := os.Stat(candidate); err == nil {
			return candidate, nil
		}
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("could not find %s next to the language host or on PATH: %w", name, err)
	}
	return p, nil
}

type host struct {
	pulumirpc.UnimplementedLanguageRuntimeServer

	execShim      string
	engineAddress string
	tracing       string
}

// options reads the `runtime.options` block of Pulumi.yaml.
func options(info *pulumirpc.ProgramInfo) (toolchain.PythonOptions, error) {
	opts := toolchain.PythonOptions{
		Root:       info.GetRootDirectory(),
		ProgramDir: info.GetProgramDirectory(),
		Toolchain:  toolchain.Auto,
	}
	m := map[string]any{}
	if s := info.GetOptions(); s != nil {
		m = s.AsMap()
	}
	if v, ok := m["virtualenv"].(string); ok {
		opts.Virtualenv = v
	}
	if v, ok := m["toolchain"].(string); ok {
		switch strings.ToLower(v) {
		case "pip":
			opts.Toolchain = toolchain.Pip
		case "poetry":
			opts.Toolchain = toolchain.Poetry
		case "uv":
			opts.Toolchain = toolchain.Uv
		default:
			return opts, fmt.Errorf("unsupported python toolchain %q", v)
		}
	}
	// A virtualenv with no explicit toolchain means pip, as upstream does.
	if opts.Virtualenv != "" && opts.Toolchain == toolchain.Auto {
		opts.Toolchain = toolchain.Pip
	}
	if v, ok := m["typechecker"].(string); ok {
		switch strings.ToLower(v) {
		case "mypy":
			opts.Typechecker = toolchain.TypeCheckerMypy
		case "pyright":
			opts.Typechecker = toolchain.TypeCheckerPyright
		default:
			return opts, fmt.Errorf("unsupported typechecker %q", v)
		}
	}
	return opts, nil
}

func resolve(info *pulumirpc.ProgramInfo) (toolchain.Toolchain, error) {
	tc, _, err := resolveWithOptions(info)
	return tc, err
}

func resolveWithOptions(info *pulumirpc.ProgramInfo) (toolchain.Toolchain, toolchain.PythonOptions, error) {
	opts, err := options(info)
	if err != nil {
		return nil, opts, err
	}
	tc, err := toolchain.ResolveToolchain(opts)
	return tc, opts, err
}

// typecheck runs the typechecker Pulumi.yaml asks for over the program
// directory before the program runs, failing the run on type errors.
func typecheck(ctx context.Context, tc toolchain.Toolchain, opts toolchain.PythonOptions) error {
	var module string
	switch opts.Typechecker {
	case toolchain.TypeCheckerMypy:
		module = "mypy"
	case toolchain.TypeCheckerPyright:
		module = "pyright"
	default:
		return nil
	}
	cmd, err := tc.ModuleCommand(ctx, module, ".")
	if err != nil {
		return err
	}
	cmd.Dir = opts.ProgramDir
	cmd.Stdout = os.Stdout
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s typechecking failed: %w", module, err)
	}
	return nil
}

func (h *host) GetPluginInfo(context.Context, *emptypb.Empty) (*pulumirpc.PluginInfo, error) {
	return &pulumirpc.PluginInfo{Version: version.Version}, nil
}

func (h *host) Run(ctx context.Context, req *pulumirpc.RunRequest) (*pulumirpc.RunResponse, error) {
	tc, opts, err := resolveWithOptions(req.GetInfo())
	if err != nil {
		return &pulumirpc.RunResponse{Error: err.Error()}, nil
	}
	if err := tc.ValidateVenv(ctx); err != nil {
		return &pulumirpc.RunResponse{Error: err.Error()}, nil
	}
	if err := typecheck(ctx, tc, opts); err != nil {
		return &pulumirpc.RunResponse{Error: err.Error()}, nil
	}

	args := []string{h.execShim}
	add := func(k, v string) {
		if v != "" {
			args = append(args, "--"+k, v)
		}
	}
	add("monitor", req.GetMonitorAddress())
	add("engine", h.engineAddress)
	add("project", req.GetProject())
	add("root_directory", req.GetInfo().GetRootDirectory())
	add("stack", req.GetStack())
	add("pwd", req.GetPwd())
	add("dry_run", strconv.FormatBool(req.GetDryRun()))
	add("parallel", strconv.Itoa(int(req.GetParallel())))
	add("organization", req.GetOrganization())
	add("tracing", h.tracing)
	program := req.GetInfo().GetEntryPoint()
	if program == "" {
		program = req.GetProgram() //nolint:staticcheck // older engines
	}
	if program == "" {
		program = "."
	}
	args = append(args, program)
	args = append(args, req.GetArgs()...)

	cmd, err := tc.Command(ctx, args...)
	if err != nil {
		return &pulumirpc.RunResponse{Error: err.Error()}, nil
	}
	if cmd.Env == nil {
		cmd.Env = os.Environ()
	}
	configMap := req.GetConfig()
	if configMap == nil {
		configMap = map[string]string{}
	}
	config, err := json.Marshal(configMap)
	if err != nil {
		return nil, err
	}
	secretKeys := req.GetConfigSecretKeys()
	if secretKeys == nil {
		secretKeys = []string{}
	}
	secretKeysJSON, err := json.Marshal(secretKeys)
	if err != nil {
		return nil, err
	}
	cmd.Env = append(cmd.Env,
		"PULUMI_CONFIG="+string(config),
		"PULUMI_CONFIG_SECRET_KEYS="+string(secretKeysJSON),
	)
	cmd.Dir = req.GetPwd()
	cmd.Stdout = os.Stdout
	cmd.Stderr = os.Stderr
	logging.V(5).Infof("language host launching: %s", strings.Join(cmd.Args, " "))

	if err := cmd.Run(); err != nil {
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			if exitErr.ExitCode() == userActionableExitCode {
				return &pulumirpc.RunResponse{Bail: true}, nil
			}
			return &pulumirpc.RunResponse{
				Error: fmt.Sprintf("Program exited with non-zero exit code: %d", exitErr.ExitCode()),
			}, nil
		}
		return &pulumirpc.RunResponse{
			Error: fmt.Sprintf("Problem executing program (could not run language executor): %v", err),
		}, nil
	}
	return &pulumirpc.RunResponse{}, nil
}

// listPluginsScript prints, as JSON, the resource plugins that installed
// Python packages declare in a pulumi-plugin.json file next to their code.
const listPluginsScript = `
import json, importlib.metadata as md
out = []
for dist in md.distributions():
    for f in (dist.files or []):
        if f.name != "pulumi-plugin.json" or len(f.parts) != 2:
            continue
        try:
            data = json.loads(f.read_text())
        except Exception:
            continue
        if not data.get("resource"):
            continue
        out.append({"name": data.get("name") or dist.metadata["Name"].replace("pulumi_", "").replace("pulumi-", ""),
                    "version": data.get("version") or "",
                    "server": data.get("server") or ""})
print(json.dumps(out))
`

func (h *host) GetRequiredPackages(
	ctx context.Context, req *pulumirpc.GetRequiredPackagesRequest,
) (*pulumirpc.GetRequiredPackagesResponse, error) {
	tc, err := resolve(req.GetInfo())
	if err != nil {
		return nil, err
	}
	cmd, err := tc.Command(ctx, "-c", listPluginsScript)
	if err != nil {
		return nil, err
	}
	cmd.Dir = req.GetInfo().GetProgramDirectory()
	out, err := cmd.Output()
	if err != nil {
		// Upstream also degrades to "no plugins known" when the environment
		// cannot be inspected; the engine then loads providers on demand.
		logging.V(3).Infof("listing python packages failed: %v", err)
		return &pulumirpc.GetRequiredPackagesResponse{}, nil
	}
	var found []struct{ Name, Version, Server string }
	if err := json.Unmarshal(out, &found); err != nil {
		return nil, fmt.Errorf("parsing plugin list: %w", err)
	}
	resp := &pulumirpc.GetRequiredPackagesResponse{}
	for _, p := range found {
		v := p.Version
		if v != "" && !strings.HasPrefix(v, "v") {
			v = "v" + v
		}
		resp.Packages = append(resp.Packages, &pulumirpc.PackageDependency{
			Kind: "resource", Name: p.Name, Version: v, Server: p.Server,
		})
	}
	return resp, nil
}

func (h *host) About(ctx context.Context, req *pulumirpc.AboutRequest) (*pulumirpc.AboutResponse, error) {
	tc, err := resolve(req.GetInfo())
	if err != nil {
		return nil, err
	}
	info, err := tc.About(ctx)
	if err != nil {
		return nil, err
	}
	return &pulumirpc.AboutResponse{
		Executable: info.PythonExecutable,
		Version:    info.PythonVersion.String(),
		Metadata:   map[string]string{"toolchain": "pip-compatible (homelab-rack host)"},
	}, nil
}

func (h *host) GetProgramDependencies(
	ctx context.Context, req *pulumirpc.GetProgramDependenciesRequest,
) (*pulumirpc.GetProgramDependenciesResponse, error) {
	tc, err := resolve(req.GetInfo())
	if err != nil {
		return nil, err
	}
	pkgs, err := tc.ListPackages(ctx, req.GetTransitiveDependencies())
	if err != nil {
		return nil, err
	}
	resp := &pulumirpc.GetProgramDependenciesResponse{}
	for _, p := range pkgs {
		resp.Dependencies = append(resp.Dependencies, &pulumirpc.DependencyInfo{Name: p.Name, Version: p.Version})
	}
	return resp, nil
}
