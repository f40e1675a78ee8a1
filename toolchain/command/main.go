// Command pulumi-resource-command is a stand-in for the Pulumi Command
// provider, written for this repository's offline toolchain. Real racks run
// upstream's pulumi-command; this one conforms to pulumi-command v1.2.1 on the
// points below (each cited as file:line at tag v1.2.1 of
// github.com/pulumi/pulumi-command, paths under provider/pkg/provider/, or of
// pulumi-go-provider v1.3.0, which v1.2.1 builds on) and is held to them by
// tests/toolchain/test_command_conformance.py against a real sshd.
//
// Why it exists: upstream's provider module
// (github.com/pulumi/pulumi-command/provider) is not served by the Go module
// proxy reachable here (403 for every version; its releases are tagged on the
// repository root, so the submodule has no semver tags either). The Python SDK
// pulumi-command==1.2.1 only speaks the provider gRPC protocol, so this
// provider implements the same resource tokens and property names.
//
// Conforming points (tested):
//   - Secrets: an output is secret only when the same-named input is
//     (pulumi-go-provider infer/resource.go:592-630, :772-807); stdout/stderr
//     have no same-named input, so they are secret only through the engine's
//     additionalSecretOutputs. `connection` is secret (remote/command.go:46,
//     copy.go:37 `provider:"secret"`, applied in Check: infer/apply_secrets.go:29).
//   - Setenv: a refused `environment` variable fails the command with an error
//     diagnostic; refused PULUMI_COMMAND_STDOUT/STDERR (set on update and
//     delete when the previous output is non-empty) are a warning
//     (remote/commandOutputs.go:42-71, :110-126).
//   - SSH agent: agentSocketPath, else a non-empty SSH_AUTH_SOCK, is dialled;
//     a failure is an error (remote/connection.go:131-145,
//     remote/connection_unix.go:12-21).
//   - Host keys: with hostKey set, FixedHostKey and HostKeyAlgorithms = that
//     key's type only (remote/connection.go:88-104).
//   - Dial retries: dialErrorLimit (default 10, -1 unlimited) failed dials
//     after the first, waiting 0.1 s x1.5 each time (max 5 s): 11 dials and
//     ~11.3 s of waiting by default (remote/connection.go:150-187, :245-255,
//     over the same sdk/v3 retry.Until: go/common/util/retry/until.go:40-42).
//   - CopyToRemote over SFTP: path rules of remote/copyController.go:221-269,
//     text assets :33-62, Check :72-115, update copies only when the source
//     hash or remotePath changed :137-154; files are created by the SFTP
//     server (mode from its umask, not the local mode) :271-289.
//   - Invokes: command:local:run only; there is no command:remote:run
//     (provider.go:90-94).
//   - Preview never runs or connects (remote/commandController.go:44-46,
//     :71-73); a `triggers` change replaces (common/inputs.go:10) and the
//     replaced resource runs its OLD `delete` (commandController.go:85-92).
//   - An update with neither `update` nor `create` keeps the old stdout/stderr
//     (remote/commandController.go:70, :75-81); every change of a CopyFile,
//     which has no Update, replaces it (pulumi-go-provider infer/resource.go:1134-1150).
//
// Also as upstream, not covered by the conformance suite: any other input
// change updates; stdout/stderr trailing newline trimmed; user root, port 22,
// perDialTimeout 15 s by default; no host-key check without hostKey; errors
// carry the command text and its combined output; Read returns the state
// unchanged. Not implemented: local.Command assetPaths/archivePaths (an
// error), upstream's exact preview computedness of update outputs, its
// retried NewClientConn through a proxy.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/pulumi/pulumi/sdk/v3/go/common/diag"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/plugin"
	"github.com/pulumi/pulumi/sdk/v3/go/common/util/cmdutil"
	"github.com/pulumi/pulumi/sdk/v3/go/common/util/retry"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi/provider"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
)

// Version is stamped by toolchain/build.sh (-X main.Version=...).
var Version = "1.2.1"

const (
	tLocalCommand  = "command:local:Command"
	tRemoteCommand = "command:remote:Command"
	tCopyToRemote  = "command:remote:CopyToRemote"
	tCopyFile      = "command:remote:CopyFile"
	fLocalRun      = "command:local:run"

	envStdout = "PULUMI_COMMAND_STDOUT"
	envStderr = "PULUMI_COMMAND_STDERR"
)

// outputKeys are computed by the provider, never inputs.
var outputKeys = map[string]bool{"stdout": true, "stderr": true, "assets": true, "archive": true}

func main() {
	err := provider.Main("command", func(h *provider.HostClient) (pulumirpc.ResourceProviderServer, error) {
		return &commandProvider{host: h}, nil
	})
	if err != nil {
		cmdutil.ExitError(err.Error())
	}
}

type commandProvider struct {
	pulumirpc.UnimplementedResourceProviderServer
	host *provider.HostClient
}

var marshalOpts = plugin.MarshalOptions{KeepUnknowns: true, KeepSecrets: true, KeepResources: true, SkipNulls: true}

func unmarshal(s *structpb.Struct) (resource.PropertyMap, error) {
	return plugin.UnmarshalProperties(s, marshalOpts)
}

func marshal(m resource.PropertyMap) (*structpb.Struct, error) {
	return plugin.MarshalProperties(m, marshalOpts)
}

func resourceType(urn string) string {
	return string(resource.URN(urn).Type())
}

// ---- protocol plumbing -----------------------------------------------------

func (p *commandProvider) GetPluginInfo(context.Context, *emptypb.Empty) (*pulumirpc.PluginInfo, error) {
	return &pulumirpc.PluginInfo{Version: Version}, nil
}

func (p *commandProvider) GetSchema(context.Context, *pulumirpc.GetSchemaRequest) (*pulumirpc.GetSchemaResponse, error) {
	return &pulumirpc.GetSchemaResponse{Schema: fmt.Sprintf(`{"name":"command","version":%q}`, Version)}, nil
}

func (p *commandProvider) Attach(context.Context, *pulumirpc.PluginAttach) (*emptypb.Empty, error) {
	return &emptypb.Empty{}, nil
}

func (p *commandProvider) Cancel(context.Context, *emptypb.Empty) (*emptypb.Empty, error) {
	return &emptypb.Empty{}, nil
}

func (p *commandProvider) CheckConfig(_ context.Context, req *pulumirpc.CheckRequest) (*pulumirpc.CheckResponse, error) {
	return &pulumirpc.CheckResponse{Inputs: req.GetNews()}, nil
}

func (p *commandProvider) DiffConfig(context.Context, *pulumirpc.DiffRequest) (*pulumirpc.DiffResponse, error) {
	return &pulumirpc.DiffResponse{Changes: pulumirpc.DiffResponse_DIFF_NONE}, nil
}

func (p *commandProvider) Configure(context.Context, *pulumirpc.ConfigureRequest) (*pulumirpc.ConfigureResponse, error) {
	return &pulumirpc.ConfigureResponse{AcceptSecrets: true, SupportsPreview: true, AcceptResources: true}, nil
}

func (p *commandProvider) Check(_ context.Context, req *pulumirpc.CheckRequest) (*pulumirpc.CheckResponse, error) {
	news, err := unmarshal(req.GetNews())
	if err != nil {
		return nil, err
	}
	var failures []*pulumirpc.CheckFailure
	fail := func(prop, reason string) {
		failures = append(failures, &pulumirpc.CheckFailure{Property: prop, Reason: reason})
	}
	t := resourceType(req.GetUrn())
	switch t {
	case tLocalCommand:
		for _, k := range []string{"assetPaths", "archivePaths"} {
			if v, ok := news[resource.PropertyKey(k)]; ok && !v.IsNull() {
				fail(k, k+" is not supported by this toolchain's command provider")
			}
		}
		checkLogging(news, fail)
	case tRemoteCommand, tCopyToRemote, tCopyFile:
		c, ok := news["connection"]
		if !ok || c.IsNull() {
			fail("connection", "missing required property 'connection'")
		} else if pc := plain(c); pc.IsObject() {
			if h, ok := pc.ObjectValue()["host"]; !ok || h.IsNull() {
				fail("connection.host", "missing required property 'connection.host'")
			}
		}
		if t == tRemoteCommand {
			checkLogging(news, fail)
		}
		if t == tCopyToRemote {
			for _, k := range []string{"source", "remotePath"} {
				if v, ok := news[resource.PropertyKey(k)]; !ok || v.IsNull() {
					fail(k, "missing required property '"+k+"'")
				}
			}
			// remote/copyController.go:101-112: a path or text asset, or a path archive.
			if src := plain(news["source"]); src.IsAsset() {
				if a := src.AssetValue(); !a.IsPath() && !a.IsText() {
					fail("asset", "asset must be a path-based file asset or a text asset")
				}
			} else if src.IsArchive() && !src.ArchiveValue().IsPath() {
				fail("archive", "archive must be a path to a file or directory")
			}
		}
		if t == tCopyFile {
			for _, k := range []string{"localPath", "remotePath"} {
				if v, ok := news[resource.PropertyKey(k)]; !ok || v.IsNull() {
					fail(k, "missing required property '"+k+"'")
				}
			}
		}
	default:
		return nil, fmt.Errorf("unknown resource type %q", t)
	}
	if t == tLocalCommand {
		return &pulumirpc.CheckResponse{Inputs: req.GetNews(), Failures: failures}, nil
	}
	// `connection` is tagged provider:"secret" (remote/command.go:46, copy.go:37,
	// copyfile.go:33); Check marks it secret whatever the program sent
	// (pulumi-go-provider infer/apply_secrets.go:29, called by infer/resource.go:1046
	// for Command and CopyFile, :1022 for CopyToRemote's own Check).
	if c, ok := news["connection"]; ok && !c.IsNull() && !c.IsSecret() {
		news["connection"] = resource.MakeSecret(c)
	}
	checked, err := marshal(news)
	if err != nil {
		return nil, err
	}
	return &pulumirpc.CheckResponse{Inputs: checked, Failures: failures}, nil
}

func checkLogging(news resource.PropertyMap, fail func(string, string)) {
	v, ok := news["logging"]
	if !ok || v.IsNull() || v.IsComputed() || !plain(v).IsString() {
		return
	}
	switch plain(v).StringValue() {
	case "stdout", "stderr", "stdoutAndStderr", "none":
	default:
		fail("logging", "logging must be one of stdout, stderr, stdoutAndStderr, none")
	}
}

func (p *commandProvider) Diff(_ context.Context, req *pulumirpc.DiffRequest) (*pulumirpc.DiffResponse, error) {
	oldsStruct := req.GetOldInputs()
	if oldsStruct == nil {
		oldsStruct = req.GetOlds()
	}
	olds, err := unmarshal(oldsStruct)
	if err != nil {
		return nil, err
	}
	news, err := unmarshal(req.GetNews())
	if err != nil {
		return nil, err
	}
	keys := map[string]bool{}
	for k := range olds {
		if !outputKeys[string(k)] {
			keys[string(k)] = true
		}
	}
	for k := range news {
		keys[string(k)] = true
	}
	// `triggers` is replaceOnChanges (common/inputs.go:10, remote/copy.go:38). CopyFile has
	// no Update (remote/copyfileController.go:30), so pulumi-go-provider makes every change
	// of it a replace (v1.3.0 infer/resource.go:1134-1150).
	replaceAll := resourceType(req.GetUrn()) == tCopyFile
	var diffs, replaces []string
	detailed := map[string]*pulumirpc.PropertyDiff{}
	for k := range keys {
		o, n := olds[resource.PropertyKey(k)], news[resource.PropertyKey(k)]
		if equalValues(o, n) {
			continue
		}
		diffs = append(diffs, k)
		kind := pulumirpc.PropertyDiff_UPDATE
		if k == "triggers" || replaceAll {
			replaces = append(replaces, k)
			kind = pulumirpc.PropertyDiff_UPDATE_REPLACE
		}
		detailed[k] = &pulumirpc.PropertyDiff{Kind: kind, InputDiff: true}
	}
	sort.Strings(diffs)
	sort.Strings(replaces)
	changes := pulumirpc.DiffResponse_DIFF_NONE
	if len(diffs) > 0 {
		changes = pulumirpc.DiffResponse_DIFF_SOME
	}
	return &pulumirpc.DiffResponse{
		Changes: changes, Diffs: diffs, Replaces: replaces,
		DetailedDiff: detailed, HasDetailedDiff: true,
	}, nil
}

// equalValues compares two input values, ignoring secretness; unknown never equals.
func equalValues(a, b resource.PropertyValue) bool {
	if a.ContainsUnknowns() || b.ContainsUnknowns() {
		return false
	}
	return plainDeep(a).DeepEquals(plainDeep(b))
}

func (p *commandProvider) Create(ctx context.Context, req *pulumirpc.CreateRequest) (*pulumirpc.CreateResponse, error) {
	inputs, err := unmarshal(req.GetProperties())
	if err != nil {
		return nil, err
	}
	urn := resource.URN(req.GetUrn())
	id := "preview"
	if !req.GetPreview() {
		id = urn.Name() + "-" + randomHex(4)
	}
	outs, err := p.apply(ctx, urn, inputs, nil, "create", req.GetPreview())
	if err != nil {
		return nil, err
	}
	props, err := marshal(outs)
	if err != nil {
		return nil, err
	}
	return &pulumirpc.CreateResponse{Id: id, Properties: props}, nil
}

func (p *commandProvider) Update(ctx context.Context, req *pulumirpc.UpdateRequest) (*pulumirpc.UpdateResponse, error) {
	olds, err := unmarshal(req.GetOlds())
	if err != nil {
		return nil, err
	}
	news, err := unmarshal(req.GetNews())
	if err != nil {
		return nil, err
	}
	outs, err := p.apply(ctx, resource.URN(req.GetUrn()), news, olds, "update", req.GetPreview())
	if err != nil {
		return nil, err
	}
	props, err := marshal(outs)
	if err != nil {
		return nil, err
	}
	return &pulumirpc.UpdateResponse{Properties: props}, nil
}

func (p *commandProvider) Delete(ctx context.Context, req *pulumirpc.DeleteRequest) (*emptypb.Empty, error) {
	olds, err := unmarshal(req.GetProperties())
	if err != nil {
		return nil, err
	}
	urn := resource.URN(req.GetUrn())
	switch t := string(urn.Type()); t {
	case tLocalCommand, tRemoteCommand:
		script := str(olds, "delete")
		if script == "" {
			return &emptypb.Empty{}, nil
		}
		spec := commandSpec(olds)
		if boolOr(olds, "addPreviousOutputInEnv", true) {
			spec.prevStdout, spec.prevStderr = str(olds, "stdout"), str(olds, "stderr")
		}
		if t == tLocalCommand {
			_, _, err = p.runLocal(ctx, urn, spec, script)
		} else {
			_, _, err = p.runRemote(ctx, urn, olds, spec, script)
		}
		if err != nil {
			return nil, err
		}
	}
	// CopyToRemote / CopyFile leave the remote files in place, as upstream does.
	return &emptypb.Empty{}, nil
}

func (p *commandProvider) Read(_ context.Context, req *pulumirpc.ReadRequest) (*pulumirpc.ReadResponse, error) {
	return &pulumirpc.ReadResponse{Id: req.GetId(), Properties: req.GetProperties(), Inputs: req.GetInputs()}, nil
}

func (p *commandProvider) Invoke(ctx context.Context, req *pulumirpc.InvokeRequest) (*pulumirpc.InvokeResponse, error) {
	args, err := unmarshal(req.GetArgs())
	if err != nil {
		return nil, err
	}
	script := str(args, "command")
	spec := commandSpec(args)
	var stdout, stderr string
	switch req.GetTok() {
	case fLocalRun:
		stdout, stderr, err = p.runLocal(ctx, "", spec, script)
	default: // provider.go:90-94: local.Run is the only function; there is no remote run
		return nil, fmt.Errorf("unknown function %q", req.GetTok())
	}
	if err != nil {
		return nil, err
	}
	outs := args.Copy()
	outs["stdout"] = resource.NewStringProperty(stdout)
	outs["stderr"] = resource.NewStringProperty(stderr)
	ret, err := marshal(outs)
	if err != nil {
		return nil, err
	}
	return &pulumirpc.InvokeResponse{Return: ret}, nil
}

// ---- resource behaviour ----------------------------------------------------

// apply runs create (olds == nil) or update and returns the new state.
func (p *commandProvider) apply(
	ctx context.Context, urn resource.URN, inputs, olds resource.PropertyMap, op string, preview bool,
) (resource.PropertyMap, error) {
	outs := resource.PropertyMap{}
	for k, v := range inputs {
		outs[k] = v
	}
	t := string(urn.Type())
	switch t {
	case tLocalCommand, tRemoteCommand:
		if preview {
			outs["stdout"] = resource.MakeComputed(resource.NewStringProperty(""))
			outs["stderr"] = resource.MakeComputed(resource.NewStringProperty(""))
			return outs, nil
		}
		script := str(inputs, "create")
		if op == "update" {
			if u := str(inputs, "update"); u != "" {
				script = u
			}
		}
		spec := commandSpec(inputs)
		if olds != nil && boolOr(inputs, "addPreviousOutputInEnv", true) {
			spec.prevStdout, spec.prevStderr = str(olds, "stdout"), str(olds, "stderr")
		}
		// An update starts from the old outputs and keeps them when there is neither an
		// `update` nor a `create` to run (remote/commandController.go:70, :75-81;
		// local/commandController.go:74, :79-87).
		var stdout, stderr string
		if olds != nil {
			stdout, stderr = str(olds, "stdout"), str(olds, "stderr")
		}
		var err error
		if script != "" {
			if t == tLocalCommand {
				stdout, stderr, err = p.runLocal(ctx, urn, spec, script)
			} else {
				stdout, stderr, err = p.runRemote(ctx, urn, inputs, spec, script)
			}
			if err != nil {
				return nil, err
			}
		}
		// An output is secret only when the same-named input is (pulumi-go-provider
		// infer/resource.go:592-630 with the default flow of :772-807): the inputs
		// copied into outs keep their own secret-ness, and stdout/stderr have no
		// same-named input, so they are plain here. additionalSecretOutputs
		// (engine side) is how a program makes them secret.
		outs["stdout"] = resource.NewStringProperty(stdout)
		outs["stderr"] = resource.NewStringProperty(stderr)
		return outs, nil
	case tCopyToRemote, tCopyFile:
		if preview {
			return outs, nil
		}
		// remote/copyController.go:148: an update copies again only when the
		// source's hash or remotePath changed.
		if op == "update" && t == tCopyToRemote && olds != nil &&
			sourceHash(olds) == sourceHash(inputs) && str(olds, "remotePath") == str(inputs, "remotePath") {
			return outs, nil
		}
		return outs, p.copyToRemote(ctx, urn, inputs)
	default:
		return nil, fmt.Errorf("unknown resource type %q", t)
	}
}

// sourceHash is the hash of a CopyToRemote source (remote/copy.go:77-82).
func sourceHash(m resource.PropertyMap) string {
	src := plain(m["source"])
	switch {
	case src.IsAsset():
		a := src.AssetValue()
		if a.Hash == "" {
			_ = a.EnsureHash()
		}
		return a.Hash
	case src.IsArchive():
		a := src.ArchiveValue()
		if a.Hash == "" {
			_ = a.EnsureHash()
		}
		return a.Hash
	}
	return ""
}

type cmdSpec struct {
	env         map[string]string
	stdin       string
	dir         string
	interpreter []string
	logging     string
	prevStdout  string
	prevStderr  string
}

func commandSpec(m resource.PropertyMap) cmdSpec {
	s := cmdSpec{env: map[string]string{}, logging: "stdoutAndStderr"}
	if v, ok := m["environment"]; ok && plain(v).IsObject() {
		for k, e := range plain(v).ObjectValue() {
			if pe := plain(e); pe.IsString() {
				s.env[string(k)] = pe.StringValue()
			}
		}
	}
	s.stdin = str(m, "stdin")
	s.dir = str(m, "dir")
	if l := str(m, "logging"); l != "" {
		s.logging = l
	}
	if v, ok := m["interpreter"]; ok && plain(v).IsArray() {
		for _, e := range plain(v).ArrayValue() {
			if pe := plain(e); pe.IsString() {
				s.interpreter = append(s.interpreter, pe.StringValue())
			}
		}
	}
	return s
}

// logWriter streams command output to the engine line by line, honouring
// the `logging` input.
type logWriter struct {
	p    *commandProvider
	ctx  context.Context
	urn  resource.URN
	on   bool
	mu   *sync.Mutex
	part []byte
}

func (w *logWriter) Write(b []byte) (int, error) {
	if !w.on || w.p.host == nil {
		return len(b), nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.part = append(w.part, b...)
	for {
		i := bytes.IndexByte(w.part, '\n')
		if i < 0 {
			break
		}
		line := string(w.part[:i])
		w.part = w.part[i+1:]
		_ = w.p.host.LogStatus(w.ctx, diag.Info, w.urn, line)
	}
	return len(b), nil
}

func (w *logWriter) flush() {
	if w.on && w.p.host != nil && len(w.part) > 0 {
		_ = w.p.host.LogStatus(w.ctx, diag.Info, w.urn, string(w.part))
	}
	w.part = nil
}

func (p *commandProvider) writers(ctx context.Context, urn resource.URN, logging string) (*logWriter, *logWriter) {
	mu := &sync.Mutex{}
	out := &logWriter{p: p, ctx: ctx, urn: urn, mu: mu, on: logging == "stdout" || logging == "stdoutAndStderr"}
	errw := &logWriter{p: p, ctx: ctx, urn: urn, mu: mu, on: logging == "stderr" || logging == "stdoutAndStderr"}
	return out, errw
}

func (p *commandProvider) runLocal(ctx context.Context, urn resource.URN, s cmdSpec, script string) (string, string, error) {
	interp := s.interpreter
	if len(interp) == 0 {
		interp = []string{"/bin/sh", "-c"}
	}
	args := append(append([]string{}, interp...), script)
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Dir = s.dir
	cmd.Env = os.Environ()
	for k, v := range s.env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	if s.prevStdout != "" {
		cmd.Env = append(cmd.Env, envStdout+"="+s.prevStdout)
	}
	if s.prevStderr != "" {
		cmd.Env = append(cmd.Env, envStderr+"="+s.prevStderr)
	}
	if s.stdin != "" {
		cmd.Stdin = strings.NewReader(s.stdin)
	}
	var stdout, stderr, both bytes.Buffer
	lo, le := p.writers(ctx, urn, s.logging)
	var bothMu sync.Mutex
	cmd.Stdout = io.MultiWriter(&stdout, &lockedWriter{&both, &bothMu}, lo)
	cmd.Stderr = io.MultiWriter(&stderr, &lockedWriter{&both, &bothMu}, le)
	err := cmd.Run()
	lo.flush()
	le.flush()
	if err != nil {
		return "", "", fmt.Errorf("%w: running %q:\n%s", err, script, both.String())
	}
	return strings.TrimSuffix(stdout.String(), "\n"), strings.TrimSuffix(stderr.String(), "\n"), nil
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// ---- SSH -------------------------------------------------------------------

type conn struct {
	host, user, password, privateKey, keyPassword, agentSocket, hostKey string
	port, dialErrorLimit, perDialTimeout                                int
}

// parseConn reads a connection with upstream's defaults: user root, port 22,
// dialErrorLimit 10, perDialTimeout 15 s (remote/connection.go:31-34, :54-83).
func parseConn(v resource.PropertyValue) (conn, error) {
	c := conn{port: 22, user: "root", dialErrorLimit: 10, perDialTimeout: 15}
	pv := plain(v)
	if !pv.IsObject() {
		return c, errors.New("connection must be an object")
	}
	m := pv.ObjectValue()
	c.host = str(m, "host")
	if c.host == "" {
		return c, errors.New("connection.host is required")
	}
	if u := str(m, "user"); u != "" {
		c.user = u
	}
	c.password = str(m, "password")
	c.privateKey = str(m, "privateKey")
	c.keyPassword = str(m, "privateKeyPassword")
	c.agentSocket = str(m, "agentSocketPath")
	c.hostKey = str(m, "hostKey")
	c.port = intOr(m, "port", 22)
	c.dialErrorLimit = intOr(m, "dialErrorLimit", 10)
	c.perDialTimeout = intOr(m, "perDialTimeout", 15)
	return c, nil
}

// clientConfig is remote/connection.go:85-148.
func (c conn) clientConfig() (*ssh.ClientConfig, error) {
	cfg := &ssh.ClientConfig{
		User:            c.user,
		HostKeyCallback: ssh.InsecureIgnoreHostKey(),                   //nolint:gosec // upstream without hostKey: connection.go:95-98
		Timeout:         time.Duration(c.perDialTimeout) * time.Second, // connection.go:104; 0 = none
	}
	if c.hostKey != "" {
		pk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(c.hostKey))
		if err != nil {
			return nil, fmt.Errorf("failed to parse host key: %w", err)
		}
		// connection.go:93-94: the pinned key, and only its type offered as host-key
		// algorithm (an ssh-rsa pin asks for SHA-1 RSA signatures).
		cfg.HostKeyCallback = ssh.FixedHostKey(pk)
		cfg.HostKeyAlgorithms = []string{pk.Type()}
	}
	if c.privateKey != "" {
		var signer ssh.Signer
		var err error
		if c.keyPassword != "" {
			signer, err = ssh.ParsePrivateKeyWithPassphrase([]byte(c.privateKey), []byte(c.keyPassword))
		} else {
			signer, err = ssh.ParsePrivateKey([]byte(c.privateKey))
		}
		if err != nil {
			return nil, err
		}
		cfg.Auth = append(cfg.Auth, ssh.PublicKeys(signer))
	}
	if c.password != "" {
		pw := c.password
		cfg.Auth = append(cfg.Auth, ssh.Password(pw),
			ssh.KeyboardInteractive(func(_, _ string, qs []string, _ []bool) ([]string, error) {
				answers := make([]string, len(qs))
				for i := range answers {
					answers[i] = pw
				}
				return answers, nil
			}))
	}
	// connection.go:131-145, connection_unix.go:12-21: agentSocketPath, else a
	// non-empty SSH_AUTH_SOCK, is dialled, and failing to reach it is an error
	// (before any dial of the host, so it is not retried).
	sock := c.agentSocket
	if sock == "" {
		sock = os.Getenv("SSH_AUTH_SOCK")
	}
	if sock != "" {
		ac, err := net.Dial("unix", sock)
		if err != nil {
			return nil, err
		}
		cfg.Auth = append(cfg.Auth, ssh.PublicKeysCallback(agent.NewClient(ac).Signers))
	}
	return cfg, nil
}

func (c conn) addr() string { return net.JoinHostPort(c.host, strconv.Itoa(c.port)) }

// statusf reports progress as upstream's InfoStatusf does (an ephemeral status line).
type statusf func(format string, args ...any)

// dialWithRetry is remote/connection.go:150-187, over the same sdk/v3
// retry.Until (go/common/util/retry/until.go:40-42, :63-121, alike at
// upstream's sdk v3.224.0 and our v3.274.1): the first try plus maxAttempts
// retries (-1: unlimited), waiting 0.1 s, then x1.5 each time, at most 5 s;
// the error says "after <maxAttempts> failed attempts".
func dialWithRetry[T any](ctx context.Context, status statusf, msg string, maxAttempts int, f func() (T, error)) (T, error) {
	var userError error
	ok, data, err := retry.Until(ctx, retry.Acceptor{
		Accept: func(try int, _ time.Duration) (bool, any, error) {
			var result T
			result, userError = f()
			if userError == nil {
				return true, result, nil
			}
			dials := try + 1
			if maxAttempts > -1 && dials > maxAttempts { // connection.go:252-255
				return true, nil, fmt.Errorf("after %d failed attempts: %w", try, userError)
			}
			limit := "inf"
			if maxAttempts != -1 {
				limit = strconv.Itoa(maxAttempts)
			}
			status("%s %d/%s failed: retrying", msg, dials, limit)
			return false, nil, nil
		},
	})
	if ok && err == nil {
		return data.(T), nil
	}
	var zero T
	if err == nil { // the context ended (connection.go:182-185)
		err = ctx.Err()
	}
	return zero, err
}

// dial connects (remote/connection.go:189-243), through the bastion when
// connection.proxy is set.
func dial(ctx context.Context, status statusf, connection resource.PropertyValue) (*ssh.Client, error) {
	target, err := parseConn(connection)
	if err != nil {
		return nil, err
	}
	targetCfg, err := target.clientConfig()
	if err != nil {
		return nil, err
	}
	pv, hasProxy := plain(connection).ObjectValue()["proxy"]
	if !hasProxy || pv.IsNull() {
		return dialWithRetry(ctx, status, "Dial", target.dialErrorLimit, func() (*ssh.Client, error) {
			return ssh.Dial("tcp", target.addr(), targetCfg)
		})
	}
	proxy, err := parseConn(pv)
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	proxyCfg, err := proxy.clientConfig()
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	bastion, err := dialWithRetry(ctx, status, "Dial proxy", proxy.dialErrorLimit, func() (*ssh.Client, error) {
		return ssh.Dial("tcp", proxy.addr(), proxyCfg)
	})
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	nc, err := dialWithRetry(ctx, status, "Dial from proxy", target.dialErrorLimit, func() (net.Conn, error) {
		return bastion.Dial("tcp", target.addr())
	})
	if err != nil {
		bastion.Close()
		return nil, fmt.Errorf("proxy: %w", err)
	}
	cc, chans, reqs, err := ssh.NewClientConn(nc, target.addr(), targetCfg)
	if err != nil {
		bastion.Close()
		return nil, fmt.Errorf("proxy: %w", err)
	}
	return ssh.NewClient(cc, chans, reqs), nil
}

func (p *commandProvider) status(ctx context.Context, urn resource.URN) statusf {
	return func(format string, args ...any) {
		if p.host != nil {
			_ = p.host.LogStatus(ctx, diag.Info, urn, fmt.Sprintf(format, args...))
		}
	}
}

func (p *commandProvider) log(ctx context.Context, sev diag.Severity, urn resource.URN, msg string) {
	if p.host != nil {
		_ = p.host.Log(ctx, sev, urn, msg)
	}
}

// setenvRefused is upstream's diagnostic for a refused Setenv
// (remote/commandOutputs.go:110-126).
func (p *commandProvider) setenvRefused(ctx context.Context, urn resource.URN, sev diag.Severity, key string, err error) error {
	p.log(ctx, sev, urn, fmt.Sprintf(`Unable to set '%s'. This only works if your SSH server is configured to accept
	these variables via AcceptEnv. Alternatively, if a Bash-like shell runs the command on the remote host, you could
	prefix the command itself with the variables in the form 'VAR=value command'`, key))
	return fmt.Errorf("could not set environment variable %q: %w", key, err)
}

// runRemote is remote/commandOutputs.go:30-108.
func (p *commandProvider) runRemote(
	ctx context.Context, urn resource.URN, m resource.PropertyMap, s cmdSpec, script string,
) (string, string, error) {
	connection, ok := m["connection"]
	if !ok {
		return "", "", errors.New("missing connection")
	}
	client, err := dial(ctx, p.status(ctx, urn), connection)
	if err != nil {
		return "", "", err
	}
	defer client.Close()
	session, err := client.NewSession()
	if err != nil {
		return "", "", err
	}
	defer session.Close()
	// commandOutputs.go:42-49: a refused `environment` variable fails the command.
	for _, k := range sortedKeys(s.env) {
		if err := session.Setenv(k, s.env[k]); err != nil {
			return "", "", p.setenvRefused(ctx, urn, diag.Error, k, err)
		}
	}
	// commandOutputs.go:51-71: the previous output, when non-empty, optimistically;
	// refused, it is a warning and the command runs.
	if s.prevStdout != "" {
		if err := session.Setenv(envStdout, s.prevStdout); err != nil {
			_ = p.setenvRefused(ctx, urn, diag.Warning, envStdout, err)
		}
	}
	if s.prevStderr != "" {
		if err := session.Setenv(envStderr, s.prevStderr); err != nil {
			_ = p.setenvRefused(ctx, urn, diag.Warning, envStderr, err)
		}
	}
	if s.stdin != "" {
		session.Stdin = strings.NewReader(s.stdin)
	}
	var stdout, stderr, both bytes.Buffer
	var bothMu sync.Mutex
	lo, le := p.writers(ctx, urn, s.logging)
	session.Stdout = io.MultiWriter(&stdout, &lockedWriter{&both, &bothMu}, lo)
	session.Stderr = io.MultiWriter(&stderr, &lockedWriter{&both, &bothMu}, le)
	err = session.Run(script)
	lo.flush()
	le.flush()
	if err != nil {
		return "", "", fmt.Errorf("%w: running %q:\n%s", err, script, both.String())
	}
	return strings.TrimSuffix(stdout.String(), "\n"), strings.TrimSuffix(stderr.String(), "\n"), nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// copyToRemote copies over SFTP (the server's sftp subsystem), as
// remote/copyController.go:156-191 and copyfileController.go do.
func (p *commandProvider) copyToRemote(ctx context.Context, urn resource.URN, m resource.PropertyMap) error {
	client, err := dial(ctx, p.status(ctx, urn), m["connection"])
	if err != nil {
		return err
	}
	defer client.Close()
	sc, err := sftp.NewClient(client, sftp.UseConcurrentWrites(true))
	if err != nil {
		return err
	}
	defer sc.Close()
	remotePath := str(m, "remotePath")
	if string(urn.Type()) == tCopyFile {
		// copyfileController.go: sftp Create at remotePath, no parent directories.
		return copyFile(sc, str(m, "localPath"), remotePath)
	}
	src := plain(m["source"])
	switch {
	case src.IsAsset() && src.AssetValue().IsText():
		return copyText(sc, src.AssetValue().Text, remotePath)
	case src.IsAsset():
		return sftpCopy(sc, src.AssetValue().Path, remotePath)
	case src.IsArchive():
		return sftpCopy(sc, src.ArchiveValue().Path, remotePath)
	}
	return errors.New("CopyToRemote: source must be an asset or archive")
}

// remoteStat returns nil, nil when the path does not exist (copyController.go:193-201).
func remoteStat(sc *sftp.Client, p string) (fs.FileInfo, error) {
	info, err := sc.Stat(p)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("failed to stat remote path %s: %w", p, err)
	}
	if err != nil {
		return nil, nil
	}
	return info, nil
}

// copyText is copyController.go:33-62: never into an existing directory;
// parents created.
func copyText(sc *sftp.Client, content, dest string) error {
	st, err := remoteStat(sc, dest)
	if err != nil {
		return err
	}
	if st != nil && st.IsDir() {
		return fmt.Errorf("remote path %s is a directory; when using a text asset, remotePath must be a file path", dest)
	}
	if err := sc.MkdirAll(path.Dir(dest)); err != nil {
		return fmt.Errorf("failed to create parent directories for %s: %w", dest, err)
	}
	f, err := sc.Create(dest)
	if err != nil {
		return fmt.Errorf("failed to create remote file %s: %w", dest, err)
	}
	defer f.Close()
	if _, err := f.Write([]byte(content)); err != nil {
		return fmt.Errorf("failed to write text content to remote path %s: %w", dest, err)
	}
	return nil
}

// sftpCopy is copyController.go:203-269:
//
//	source | dest exists as dir | dest does not exist | dest exists as file
//	dir    | dest/dir           | dest/dir            | error
//	dir/   | dest/x for x in dir| dest/dir            | error
//	file   | dest/file          | dest                | dest (overwritten)
//
// ("dir/" into a missing dest: dest is created, then the contents copied into it.)
func sftpCopy(sc *sftp.Client, sourcePath, destPath string) error {
	srcInfo, err := os.Stat(sourcePath)
	if err != nil {
		return err
	}
	destStat, err := remoteStat(sc, destPath)
	if err != nil {
		return err
	}
	dest := destPath
	if !srcInfo.IsDir() {
		if destStat != nil && destStat.IsDir() {
			dest = path.Join(dest, filepath.Base(sourcePath))
		} else if destStat == nil {
			if err := sc.MkdirAll(path.Dir(dest)); err != nil {
				return fmt.Errorf("failed to create parent directories for %s: %w", dest, err)
			}
		}
		return copyFile(sc, sourcePath, dest)
	}
	if destStat == nil {
		if err := sc.MkdirAll(dest); err != nil {
			return fmt.Errorf("failed to create remote directory %s: %w", dest, err)
		}
	}
	if !strings.HasSuffix(sourcePath, "/") {
		dest = path.Join(dest, filepath.Base(sourcePath))
		st, err := remoteStat(sc, dest)
		if err != nil {
			return err
		}
		if st != nil && !st.IsDir() {
			return fmt.Errorf("remote path %s exists but is not a directory", dest)
		}
		if st == nil {
			if err := sc.Mkdir(dest); err != nil {
				return fmt.Errorf("failed to create remote directory %s: %w", dest, err)
			}
		}
	}
	return copyDir(sc, sourcePath, dest)
}

// copyFile is copyController.go:271-289: sftp Create (O_RDWR|O_CREATE|O_TRUNC,
// no mode sent), so a new file gets the server's default mode, an existing one
// keeps its own; the local mode is not copied.
func copyFile(sc *sftp.Client, src, dst string) error {
	local, err := os.Open(src)
	if err != nil {
		return err
	}
	defer local.Close()
	remote, err := sc.Create(dst)
	if err != nil {
		return fmt.Errorf("failed to create remote file %s: %w", dst, err)
	}
	defer remote.Close()
	if _, err := remote.ReadFrom(local); err != nil {
		return fmt.Errorf("failed to copy file %s to remote path %s: %w", src, dst, err)
	}
	return nil
}

// copyDir is copyController.go:291-320.
func copyDir(sc *sftp.Client, src, dst string) error {
	return fs.WalkDir(os.DirFS(src), ".", func(rel string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		remotePath := path.Join(dst, filepath.ToSlash(rel))
		if !d.IsDir() {
			return copyFile(sc, filepath.Join(src, rel), remotePath)
		}
		st, err := remoteStat(sc, remotePath)
		if err != nil {
			return err
		}
		if st == nil {
			if err := sc.Mkdir(remotePath); err != nil {
				return fmt.Errorf("failed to create remote directory %s: %w", remotePath, err)
			}
		} else if !st.IsDir() {
			return fmt.Errorf("remote path %s exists but is not a directory", remotePath)
		}
		return nil
	})
}

// ---- property helpers ------------------------------------------------------

// plain strips a top-level secret wrapper.
func plain(v resource.PropertyValue) resource.PropertyValue {
	for v.IsSecret() {
		v = v.SecretValue().Element
	}
	return v
}

// plainDeep strips secret wrappers at every level.
func plainDeep(v resource.PropertyValue) resource.PropertyValue {
	v = plain(v)
	switch {
	case v.IsObject():
		m := resource.PropertyMap{}
		for k, e := range v.ObjectValue() {
			m[k] = plainDeep(e)
		}
		return resource.NewObjectProperty(m)
	case v.IsArray():
		arr := make([]resource.PropertyValue, len(v.ArrayValue()))
		for i, e := range v.ArrayValue() {
			arr[i] = plainDeep(e)
		}
		return resource.NewArrayProperty(arr)
	}
	return v
}

func str(m resource.PropertyMap, k string) string {
	if v, ok := m[resource.PropertyKey(k)]; ok {
		if pv := plain(v); pv.IsString() {
			return pv.StringValue()
		}
	}
	return ""
}

func boolOr(m resource.PropertyMap, k string, def bool) bool {
	if v, ok := m[resource.PropertyKey(k)]; ok {
		if pv := plain(v); pv.IsBool() {
			return pv.BoolValue()
		}
	}
	return def
}

func intOr(m resource.PropertyMap, k string, def int) int {
	if v, ok := m[resource.PropertyKey(k)]; ok {
		if pv := plain(v); pv.IsNumber() {
			return int(pv.NumberValue())
		}
	}
	return def
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
