// Command pulumi-resource-command is a stand-in for the Pulumi Command
// provider (pulumi-command v1.2.x), written for this repository's offline
// toolchain.
//
// Why it exists: upstream's provider module
// (github.com/pulumi/pulumi-command/provider) is not served by the Go module
// proxy reachable here (403 for every version; its releases are tagged on the
// repository root, so the submodule has no semver tags either). The Python SDK
// pulumi-command==1.2.1 only speaks the provider gRPC protocol, so this
// provider implements the same resource tokens and property names with the
// same observable behaviour the rack program relies on:
//
//   - command:local:Command, command:remote:Command,
//     command:remote:CopyToRemote, command:remote:CopyFile and the
//     command:local:run / command:remote:run invokes (no assetPaths /
//     archivePaths globbing: asking for it is an error, not a silent no-op).
//   - Preview never runs or connects; stdout/stderr are unknown until create.
//   - Any input change runs `update` (or `create` when `update` is unset); a
//     change to `triggers` replaces the resource, and the replaced resource
//     runs its OLD `delete`.
//   - Outputs are the inputs plus stdout/stderr, trailing newline trimmed;
//     PULUMI_COMMAND_STDOUT/STDERR carry the previous output into update and
//     delete when addPreviousOutputInEnv (default true).
//   - Read returns the state unchanged: refresh re-runs nothing.
//   - Remote: user defaults to root, port 22, dialErrorLimit 10,
//     perDialTimeout 15 s; no host-key check unless connection.hostKey is set;
//     environment goes through SSH Setenv (needs AcceptEnv on the server);
//     optional bastion via connection.proxy; key, password and agent auth.
//   - Errors carry the command text and its combined output.
//   - stdout/stderr are marked secret when any input is secret.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
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

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/pulumi/pulumi/sdk/v3/go/common/diag"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/plugin"
	"github.com/pulumi/pulumi/sdk/v3/go/common/util/cmdutil"
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
	fRemoteRun     = "command:remote:run"

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
	switch t := resourceType(req.GetUrn()); t {
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
		} else if c.IsObject() {
			if h, ok := c.ObjectValue()["host"]; !ok || h.IsNull() {
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
	return &pulumirpc.CheckResponse{Inputs: req.GetNews(), Failures: failures}, nil
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
	var diffs, replaces []string
	detailed := map[string]*pulumirpc.PropertyDiff{}
	for k := range keys {
		o, n := olds[resource.PropertyKey(k)], news[resource.PropertyKey(k)]
		if equalValues(o, n) {
			continue
		}
		diffs = append(diffs, k)
		kind := pulumirpc.PropertyDiff_UPDATE
		if k == "triggers" {
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
	case fRemoteRun:
		stdout, stderr, err = p.runRemote(ctx, "", args, spec, script)
	default:
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
		secret := inputs.ContainsSecrets()
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
		var stdout, stderr string
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
		outs["stdout"] = maybeSecret(resource.NewStringProperty(stdout), secret)
		outs["stderr"] = maybeSecret(resource.NewStringProperty(stderr), secret)
		return outs, nil
	case tCopyToRemote, tCopyFile:
		if preview {
			return outs, nil
		}
		return outs, p.copyToRemote(ctx, urn, inputs)
	default:
		return nil, fmt.Errorf("unknown resource type %q", t)
	}
}

func maybeSecret(v resource.PropertyValue, secret bool) resource.PropertyValue {
	if secret {
		return resource.MakeSecret(v)
	}
	return v
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

func (c conn) clientConfig() (*ssh.ClientConfig, error) {
	cfg := &ssh.ClientConfig{User: c.user, HostKeyCallback: ssh.InsecureIgnoreHostKey()} //nolint:gosec // upstream default
	if c.perDialTimeout > 0 {
		cfg.Timeout = time.Duration(c.perDialTimeout) * time.Second
	}
	if c.hostKey != "" {
		pk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(c.hostKey))
		if err != nil {
			return nil, fmt.Errorf("parsing connection.hostKey: %w", err)
		}
		cfg.HostKeyCallback = ssh.FixedHostKey(pk)
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
			return nil, fmt.Errorf("parsing connection.privateKey: %w", err)
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
	sock := c.agentSocket
	if sock == "" {
		sock = os.Getenv("SSH_AUTH_SOCK")
	}
	if sock != "" {
		if ac, err := net.Dial("unix", sock); err == nil {
			cfg.Auth = append(cfg.Auth, ssh.PublicKeysCallback(agent.NewClient(ac).Signers))
		}
	}
	return cfg, nil
}

func (c conn) addr() string { return net.JoinHostPort(c.host, strconv.Itoa(c.port)) }

// dial connects with retries (dialErrorLimit attempts, -1 = unlimited),
// through the bastion when connection.proxy is set.
func dial(ctx context.Context, connection resource.PropertyValue) (*ssh.Client, error) {
	target, err := parseConn(connection)
	if err != nil {
		return nil, err
	}
	targetCfg, err := target.clientConfig()
	if err != nil {
		return nil, err
	}
	var proxy *conn
	var proxyCfg *ssh.ClientConfig
	if pv, ok := plain(connection).ObjectValue()["proxy"]; ok && !pv.IsNull() {
		pc, err := parseConn(pv)
		if err != nil {
			return nil, fmt.Errorf("connection.proxy: %w", err)
		}
		proxy = &pc
		if proxyCfg, err = pc.clientConfig(); err != nil {
			return nil, err
		}
	}
	var lastErr error
	for attempt := 1; target.dialErrorLimit < 0 || attempt <= max(target.dialErrorLimit, 1); attempt++ {
		var client *ssh.Client
		if proxy == nil {
			client, lastErr = ssh.Dial("tcp", target.addr(), targetCfg)
		} else {
			client, lastErr = dialVia(proxy, proxyCfg, target, targetCfg)
		}
		if lastErr == nil {
			return client, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Duration(min(attempt, 5)) * time.Second):
		}
	}
	return nil, fmt.Errorf("dial ssh %s@%s: failed after %d attempts: %w",
		target.user, target.addr(), max(target.dialErrorLimit, 1), lastErr)
}

func dialVia(proxy *conn, proxyCfg *ssh.ClientConfig, target conn, targetCfg *ssh.ClientConfig) (*ssh.Client, error) {
	bastion, err := ssh.Dial("tcp", proxy.addr(), proxyCfg)
	if err != nil {
		return nil, fmt.Errorf("proxy %s: %w", proxy.addr(), err)
	}
	nc, err := bastion.Dial("tcp", target.addr())
	if err != nil {
		bastion.Close()
		return nil, err
	}
	cc, chans, reqs, err := ssh.NewClientConn(nc, target.addr(), targetCfg)
	if err != nil {
		bastion.Close()
		return nil, err
	}
	return ssh.NewClient(cc, chans, reqs), nil
}

func (p *commandProvider) runRemote(
	ctx context.Context, urn resource.URN, m resource.PropertyMap, s cmdSpec, script string,
) (string, string, error) {
	connection, ok := m["connection"]
	if !ok {
		return "", "", errors.New("missing connection")
	}
	client, err := dial(ctx, connection)
	if err != nil {
		return "", "", err
	}
	defer client.Close()
	session, err := client.NewSession()
	if err != nil {
		return "", "", err
	}
	defer session.Close()
	// Like upstream: Setenv errors are ignored; the variable only arrives
	// when the server's AcceptEnv allows it.
	for k, v := range s.env {
		_ = session.Setenv(k, v)
	}
	if s.prevStdout != "" {
		_ = session.Setenv(envStdout, s.prevStdout)
	}
	if s.prevStderr != "" {
		_ = session.Setenv(envStderr, s.prevStderr)
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

// copyToRemote copies a file asset, or a directory / file archive, to
// remotePath by streaming each file through `cat` over SSH (no SFTP
// subsystem needed). Like upstream, archives are copied, not unpacked:
// a directory archive is recreated under remotePath.
func (p *commandProvider) copyToRemote(ctx context.Context, urn resource.URN, m resource.PropertyMap) error {
	remotePath := str(m, "remotePath")
	type item struct{ local, remote string }
	var items []item
	if string(urn.Type()) == tCopyFile {
		items = append(items, item{str(m, "localPath"), remotePath})
	} else {
		src := plain(m["source"])
		switch {
		case src.IsAsset():
			a := src.AssetValue()
			if a.Path == "" {
				if !a.IsText() {
					return errors.New("CopyToRemote: only file and string assets are supported")
				}
				return p.writeRemote(ctx, m, remotePath, strings.NewReader(a.Text), 0o644)
			}
			items = append(items, item{a.Path, remotePath})
		case src.IsArchive():
			a := src.ArchiveValue()
			if a.Path == "" {
				return errors.New("CopyToRemote: only FileArchive sources are supported")
			}
			info, err := os.Stat(a.Path)
			if err != nil {
				return err
			}
			if !info.IsDir() {
				items = append(items, item{a.Path, path.Join(remotePath, filepath.Base(a.Path))})
				break
			}
			base := filepath.Base(filepath.Clean(a.Path))
			err = filepath.Walk(a.Path, func(f string, fi os.FileInfo, err error) error {
				if err != nil || fi.IsDir() {
					return err
				}
				rel, err := filepath.Rel(a.Path, f)
				if err != nil {
					return err
				}
				items = append(items, item{f, path.Join(remotePath, base, filepath.ToSlash(rel))})
				return nil
			})
			if err != nil {
				return err
			}
		default:
			return errors.New("CopyToRemote: source must be an asset or archive")
		}
	}
	for _, it := range items {
		f, err := os.Open(it.local)
		if err != nil {
			return err
		}
		info, _ := f.Stat()
		err = p.writeRemote(ctx, m, it.remote, f, info.Mode().Perm())
		f.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

func (p *commandProvider) writeRemote(ctx context.Context, m resource.PropertyMap, dest string, r io.Reader, mode os.FileMode) error {
	client, err := dial(ctx, m["connection"])
	if err != nil {
		return err
	}
	defer client.Close()
	session, err := client.NewSession()
	if err != nil {
		return err
	}
	defer session.Close()
	session.Stdin = r
	var out bytes.Buffer
	session.Stdout, session.Stderr = &out, &out
	q := shellQuote(dest)
	script := fmt.Sprintf("mkdir -p %s && cat > %s && chmod %o %s", shellQuote(path.Dir(dest)), q, mode, q)
	if err := session.Run(script); err != nil {
		return fmt.Errorf("%w: copying to %s:\n%s", err, dest, out.String())
	}
	return nil
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

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
