package imgsvc_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	imgsvc "github.com/imgsvc/imgsvc/bindings/go"
)

// registry is host:port of a registry holding the fixtures of
// scripts/fixtures.sh: IMGSVC_TEST_REGISTRY, or one TestMain starts.
var registry string

// secureDir is the directory of a registry with TLS (its own CA) and basic
// auth, made by tests/c/secure-registry.sh: IMGSVC_TEST_SECURE_DIR, or one
// TestMain starts. secureAddr is its host:port.
var secureDir, secureAddr string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	registry = os.Getenv("IMGSVC_TEST_REGISTRY")
	if registry == "" {
		dir, err := os.MkdirTemp("", "imgsvc-go-registry-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		out, err := exec.Command("../../scripts/registry.sh", "start", dir).Output()
		if err != nil {
			fmt.Fprintf(os.Stderr, "starting a registry: %v\n", err)
			return 1
		}
		defer exec.Command("../../scripts/registry.sh", "stop", dir).Run()
		registry = strings.TrimSpace(string(out))
		push := exec.Command("../../scripts/fixtures.sh", "push", registry)
		push.Stdout, push.Stderr = os.Stderr, os.Stderr
		if err := push.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "pushing fixtures: %v\n", err)
			return 1
		}
	}
	secureDir = os.Getenv("IMGSVC_TEST_SECURE_DIR")
	if secureDir == "" {
		dir, err := os.MkdirTemp("", "imgsvc-go-secure-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		start := exec.Command("../../tests/c/secure-registry.sh", "start", dir, registry)
		start.Stderr = os.Stderr
		if err := start.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "starting the TLS + basic auth registry: %v\n", err)
			return 1
		}
		defer exec.Command("../../tests/c/secure-registry.sh", "stop", dir).Run()
		secureDir = dir
	}
	addr, err := os.ReadFile(filepath.Join(secureDir, "addr"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	secureAddr = strings.TrimSpace(string(addr))
	return m.Run()
}

func ref(path string) string { return registry + "/" + path }

var imageID = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

func open(t *testing.T, opts *imgsvc.Options) (*imgsvc.Service, string) {
	t.Helper()
	root := t.TempDir()
	svc, err := imgsvc.Open(root, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { svc.Close() })
	return svc, root
}

func mustPull(t *testing.T, svc *imgsvc.Service, image string) string {
	t.Helper()
	id, err := svc.Pull(context.Background(), image, nil)
	if err != nil {
		t.Fatalf("Pull %s: %v", image, err)
	}
	if !imageID.MatchString(id) {
		t.Fatalf("Pull %s: id %q", image, id)
	}
	return id
}

func assertEmpty(t *testing.T, svc *imgsvc.Service) {
	t.Helper()
	images, err := svc.List("")
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if len(images) != 0 {
		t.Fatalf("store not empty: %+v", images)
	}
}

func TestCloseTwiceAndUseAfterClose(t *testing.T) {
	svc, err := imgsvc.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Close(); err != nil {
		t.Fatal(err)
	}
	if err := svc.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	_, err = svc.List("")
	if !errors.Is(err, imgsvc.ErrClosed) || !errors.Is(err, imgsvc.ErrInvalidArgument) {
		t.Fatalf("List after Close: %v", err)
	}
	if _, err := svc.Pull(context.Background(), ref("fixture/small:a"), nil); !errors.Is(err, imgsvc.ErrClosed) {
		t.Fatalf("Pull after Close: %v", err)
	}
}

func TestOpenOptions(t *testing.T) {
	for _, opts := range []*imgsvc.Options{
		{MaxParallelDownloads: 65},
		{MaxParallelDownloads: -1},
		{ConnectTimeout: -time.Second},
	} {
		if _, err := imgsvc.Open(t.TempDir(), opts); !errors.Is(err, imgsvc.ErrInvalidArgument) {
			t.Errorf("Open(%+v): %v, want ErrInvalidArgument", opts, err)
		}
	}
	if _, err := imgsvc.Open("", nil); !errors.Is(err, imgsvc.ErrInvalidArgument) {
		t.Errorf("Open(\"\"): %v", err)
	}
	svc, _ := open(t, &imgsvc.Options{
		Pinned:               []string{ref("fixture/root") + "*"},
		MaxParallelDownloads: 2,
		ProgressTimeout:      -1,
		ConnectTimeout:       5 * time.Second,
	})
	id := mustPull(t, svc, ref("fixture/root:latest"))
	images, err := svc.List(id)
	if err != nil || len(images) != 1 {
		t.Fatalf("List(%s): %v %v", id, images, err)
	}
	img := images[0]
	if !img.Pinned || img.UID == nil || *img.UID != 0 || img.Username != "" {
		t.Fatalf("root image: %+v", img)
	}
}

func TestPullListStatusFsInfoRemove(t *testing.T) {
	svc, root := open(t, nil)
	image := ref("fixture/debian:v1")
	var events []imgsvc.Progress
	id, err := svc.Pull(context.Background(), image, &imgsvc.PullOptions{
		Progress: func(p imgsvc.Progress) { events = append(events, p) },
	})
	if err != nil {
		t.Fatalf("Pull: %v", err)
	}
	if !imageID.MatchString(id) {
		t.Fatalf("id %q", id)
	}
	if len(events) < 3 || events[0].Kind != imgsvc.ProgressResolved || events[len(events)-1].Kind != imgsvc.ProgressCommitted {
		t.Fatalf("events: %+v", events)
	}
	if first := events[0]; !strings.HasSuffix(first.Image, "fixture/debian:v1") || first.Layers < 3 || first.Total == 0 {
		t.Fatalf("resolved event: %+v", first)
	}
	if last := events[len(events)-1]; last.Image != id {
		t.Fatalf("committed %q, pulled %q", last.Image, id)
	}
	started, done := 0, 0
	for _, e := range events {
		switch e.Kind {
		case imgsvc.ProgressLayerStarted:
			started++
		case imgsvc.ProgressLayerDone:
			done++
			if e.Done != e.Total || !strings.HasPrefix(e.Digest, "sha256:") {
				t.Errorf("layer done: %+v", e)
			}
		case imgsvc.ProgressBytes:
			if e.Done > e.Total {
				t.Errorf("bytes: %+v", e)
			}
		}
	}
	if started == 0 || started != done {
		t.Fatalf("started %d, done %d", started, done)
	}

	images, err := svc.List("")
	if err != nil || len(images) != 1 {
		t.Fatalf("List: %+v %v", images, err)
	}
	img := images[0]
	if img.ID != id || len(img.RepoTags) != 1 || img.RepoTags[0] != image || len(img.RepoDigests) != 1 ||
		img.Size == 0 || img.UID == nil || *img.UID != 65534 {
		t.Fatalf("image: %+v", img)
	}

	// Short id prefix, as crictl shows it.
	prefix := strings.TrimPrefix(id, "sha256:")[:12]
	st, err := svc.Status(prefix, false)
	if err != nil || st == nil || st.Image.ID != id || st.Info != nil {
		t.Fatalf("Status(%s): %+v %v", prefix, st, err)
	}
	st, err = svc.Status(image, true)
	if err != nil || st == nil || !strings.Contains(st.Info["info"], `"imageSpec"`) {
		t.Fatalf("verbose Status: %+v %v", st, err)
	}

	usage, err := svc.FsInfo()
	if err != nil {
		t.Fatal(err)
	}
	if usage.Mountpoint != root || usage.UsedBytes < img.Size || usage.InodesUsed == 0 ||
		time.Since(usage.Timestamp) > time.Minute {
		t.Fatalf("FsInfo: %+v (image size %d)", usage, img.Size)
	}

	if err := svc.Remove(prefix); err != nil {
		t.Fatal(err)
	}
	assertEmpty(t, svc)
	if st, err := svc.Status(id, false); st != nil || err != nil {
		t.Fatalf("Status after remove: %+v %v", st, err)
	}
}

func TestAbsentImage(t *testing.T) {
	svc, _ := open(t, nil)
	for _, name := range []string{ref("fixture/small:a"), "sha256:" + strings.Repeat("ab", 32), "abcdef0123"} {
		st, err := svc.Status(name, true)
		if st != nil || err != nil {
			t.Errorf("Status(%s) = %+v, %v; want nil, nil", name, st, err)
		}
		if err := svc.Remove(name); err != nil {
			t.Errorf("Remove(%s): %v", name, err)
		}
		images, err := svc.List(name)
		if err != nil || len(images) != 0 {
			t.Errorf("List(%s): %+v %v", name, images, err)
		}
	}
}

func TestErrors(t *testing.T) {
	svc, _ := open(t, nil)
	ctx := context.Background()
	cases := []struct {
		name string
		err  error
		want error
		code int
	}{
		{"bad reference", pullErr(svc, ctx, "UPPER/case:tag"), imgsvc.ErrInvalidArgument, 1},
		{"empty reference", pullErr(svc, ctx, ""), imgsvc.ErrInvalidArgument, 1},
		{"NUL byte", pullErr(svc, ctx, "fixture/small:a\x00b"), imgsvc.ErrInvalidArgument, 1},
		{"invalid UTF-8", pullErr(svc, ctx, "fixture/sm\xffall:a"), imgsvc.ErrInvalidArgument, 1},
		{"missing tag", pullErr(svc, ctx, ref("fixture/small:no-such-tag")), imgsvc.ErrNotFound, 2},
		{"missing repository", pullErr(svc, ctx, ref("fixture/no-such-repo:1")), imgsvc.ErrNotFound, 2},
		{"artifact", pullErr(svc, ctx, ref("fixture/artifact:latest")), imgsvc.ErrUnsupported, 7},
		{"no platform", pullErr(svc, ctx, ref("fixture/noplatform:latest")), imgsvc.ErrUnsupported, 7},
		{"untag unknown name", svc.Untag(ref("fixture/small:a")), imgsvc.ErrNotFound, 2},
		{"untag an id", svc.Untag("sha256:" + strings.Repeat("0", 64)), imgsvc.ErrInvalidArgument, 1},
		{"bad credentials JSON field", pullWithAuth(svc, &imgsvc.Auth{Auth: "not base64!"}), imgsvc.ErrInvalidArgument, 1},
		{"huge reference", pullErr(svc, ctx, ref("fixture/small:"+strings.Repeat("x", 16<<20))), imgsvc.ErrInvalidArgument, 1},
		{"nothing listening", pullErr(svc, ctx, closedPort(t)+"/fixture/small:a"), imgsvc.ErrUnavailable, 5},
		{"unknown CA", pullErr(svc, ctx, secureAddr+"/fixture/small:a"), imgsvc.ErrUnavailable, 5},
	}
	sentinels := []error{imgsvc.ErrInvalidArgument, imgsvc.ErrNotFound, imgsvc.ErrUnauthenticated,
		imgsvc.ErrPermissionDenied, imgsvc.ErrUnavailable, imgsvc.ErrIntegrity, imgsvc.ErrUnsupported,
		imgsvc.ErrStorageFull, imgsvc.ErrIO, imgsvc.ErrInternal}
	for _, c := range cases {
		if !errors.Is(c.err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, c.err, c.want)
			continue
		}
		var e *imgsvc.Error
		if !errors.As(c.err, &e) || e.Code != c.code || e.Message == "" {
			t.Errorf("%s: %#v", c.name, c.err)
		}
		for _, s := range sentinels {
			if s != c.want && errors.Is(c.err, s) {
				t.Errorf("%s: %v also matches %v", c.name, c.err, s)
			}
		}
	}
	assertEmpty(t, svc)
}

// closedPort is a loopback address where nothing listens.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func pullErr(svc *imgsvc.Service, ctx context.Context, image string) error {
	_, err := svc.Pull(ctx, image, nil)
	return err
}

func pullWithAuth(svc *imgsvc.Service, auth *imgsvc.Auth) error {
	_, err := svc.Pull(context.Background(), ref("fixture/small:a"), &imgsvc.PullOptions{Auth: auth})
	return err
}

func TestUntag(t *testing.T) {
	svc, _ := open(t, nil)
	a, b := ref("fixture/small:a"), ref("fixture/small:b")
	if ida, idb := mustPull(t, svc, a), mustPull(t, svc, b); ida != idb {
		t.Fatalf("%s and %s differ: %s %s", a, b, ida, idb)
	}
	if err := svc.Untag(b); err != nil {
		t.Fatal(err)
	}
	images, err := svc.List("")
	if err != nil || len(images) != 1 || len(images[0].RepoTags) != 1 || images[0].RepoTags[0] != a {
		t.Fatalf("after untag: %+v %v", images, err)
	}
	if err := svc.Untag(a); err != nil {
		t.Fatal(err)
	}
	assertEmpty(t, svc)
}

// Rootfs names the layer directories (unpacked on demand with NoUnpack);
// ExportRootfs writes the merged tree; an absent image is ErrNotFound.
func TestRootfsAndExport(t *testing.T) {
	svc, root := open(t, &imgsvc.Options{NoUnpack: true})
	image := ref("fixture/small:a")
	mustPull(t, svc, image)
	dirs, err := svc.Rootfs(image)
	if err != nil || len(dirs) == 0 {
		t.Fatalf("Rootfs: %v %v", dirs, err)
	}
	for _, d := range dirs {
		if !strings.HasPrefix(d, filepath.Join(root, "layers", "sha256")) {
			t.Fatalf("layer dir %q is not in the store's layer directory", d)
		}
		if st, err := os.Stat(d); err != nil || !st.IsDir() {
			t.Fatalf("layer dir %q: %v", d, err)
		}
	}
	dest := filepath.Join(t.TempDir(), "rootfs")
	if err := svc.ExportRootfs(image, dest); err != nil {
		t.Fatalf("ExportRootfs: %v", err)
	}
	entries, err := os.ReadDir(dest)
	if err != nil || len(entries) == 0 {
		t.Fatalf("export wrote nothing: %v %v", entries, err)
	}
	if err := svc.ExportRootfs(image, dest); !errors.Is(err, imgsvc.ErrInvalidArgument) {
		t.Fatalf("export into a non-empty dir: %v", err)
	}
	if _, err := svc.Rootfs(ref("fixture/absent:x")); !errors.Is(err, imgsvc.ErrNotFound) {
		t.Fatalf("Rootfs of an absent image: %v", err)
	}
}

// Cancelling the context mid-pull stops it with an error wrapping
// context.Canceled and leaves no image.
func TestPullContextCancel(t *testing.T) {
	svc, _ := open(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, err := svc.Pull(ctx, ref("fixture/debian:v1"), &imgsvc.PullOptions{
		Progress: func(p imgsvc.Progress) {
			if p.Kind == imgsvc.ProgressLayerStarted {
				cancel()
				// Give the watcher goroutine time to reach the C token, so
				// the cancel lands while the pull is still running.
				time.Sleep(100 * time.Millisecond)
			}
		},
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Pull: %v, want context.Canceled", err)
	}
	var e *imgsvc.Error
	if !errors.As(err, &e) || e.Code != 10 {
		t.Fatalf("Pull: %#v", err)
	}
	assertEmpty(t, svc)

	// A context that already ended does no work.
	if _, err := svc.Pull(ctx, ref("fixture/small:a"), nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("Pull with a cancelled context: %v", err)
	}
	assertEmpty(t, svc)
}

// stallServer accepts TCP connections and never sends a byte.
func stallServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

// A context deadline stops a pull promptly even when no bytes flow; the
// error wraps context.DeadlineExceeded.
func TestPullDeadlineWithNoBytesFlowing(t *testing.T) {
	svc, _ := open(t, &imgsvc.Options{ProgressTimeout: -1})
	addr := stallServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := svc.Pull(ctx, addr+"/stalled/image:1", nil)
	took := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		!strings.HasSuffix(err.Error(), ": context deadline exceeded") {
		t.Fatalf("Pull: %v, want context.DeadlineExceeded", err)
	}
	if took < 450*time.Millisecond || took > 5*time.Second {
		t.Fatalf("took %v", took)
	}
}

// The service's own no-progress timeout (code 11) wraps
// context.DeadlineExceeded too: a registry that answers /v2/ and then
// never sends the manifest.
func TestProgressTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2/" {
			w.WriteHeader(http.StatusOK)
			return
		}
		select { // stall until the test ends
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	svc, _ := open(t, &imgsvc.Options{ProgressTimeout: 300 * time.Millisecond})
	start := time.Now()
	_, err := svc.Pull(context.Background(), strings.TrimPrefix(srv.URL, "http://")+"/slow/image:1", nil)
	var e *imgsvc.Error
	if !errors.Is(err, context.DeadlineExceeded) || !errors.As(err, &e) || e.Code != 11 {
		t.Fatalf("Pull: %#v, want a timeout", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("took %v", took)
	}
}

type progressPanic struct{ n int }

// A panic in the progress function stops the pull and comes back out of
// Pull, with its value, after the C call returned; the service still works.
func TestProgressPanicIsRaisedAgain(t *testing.T) {
	svc, _ := open(t, nil)
	calls := 0
	recovered := func() (r any) {
		defer func() { r = recover() }()
		svc.Pull(context.Background(), ref("fixture/debian:v1"), &imgsvc.PullOptions{
			Progress: func(p imgsvc.Progress) {
				calls++
				if p.Kind == imgsvc.ProgressLayerStarted {
					panic(progressPanic{42})
				}
			},
		})
		return nil
	}()
	if p, ok := recovered.(progressPanic); !ok || p.n != 42 {
		t.Fatalf("recovered %#v", recovered)
	}
	callsAtPanic := calls
	assertEmpty(t, svc)
	id := mustPull(t, svc, ref("fixture/small:a"))
	if calls != callsAtPanic {
		t.Fatalf("the panicking callback ran again")
	}
	if st, err := svc.Status(id, false); err != nil || st == nil {
		t.Fatalf("Status after panic: %+v %v", st, err)
	}
}

// Eight goroutines pull, list, look up and remove on one service.
func TestConcurrentUse(t *testing.T) {
	svc, root := open(t, nil)
	images := []string{"fixture/small:a", "fixture/small:b", "fixture/small-v2s2:latest", "fixture/small-zstd:latest",
		"fixture/root:latest", "fixture/named:latest", "fixture/multi:latest", "fixture/nomediatype:latest"}
	var mu sync.Mutex
	ids := map[string]string{}
	var wg sync.WaitGroup
	errs := make(chan error, 1000)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 6; i++ {
				image := ref(images[(g+i)%len(images)])
				id, err := svc.Pull(context.Background(), image, nil)
				if err != nil {
					errs <- fmt.Errorf("pull %s: %w", image, err)
					continue
				}
				mu.Lock()
				if prev, ok := ids[image]; ok && prev != id {
					errs <- fmt.Errorf("%s: %s then %s", image, prev, id)
				}
				ids[image] = id
				mu.Unlock()
				if _, err := svc.List(""); err != nil {
					errs <- fmt.Errorf("list: %w", err)
				}
				if st, err := svc.Status(image, i%2 == 0); err != nil || (st != nil && st.Image.ID != id) {
					errs <- fmt.Errorf("status %s: %+v %w", image, st, err)
				}
				if i%2 == 1 {
					if err := svc.Remove(image); err != nil {
						errs <- fmt.Errorf("remove %s: %w", image, err)
					}
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, image := range images {
		if id := mustPull(t, svc, ref(image)); id != ids[ref(image)] {
			t.Errorf("%s: %s, earlier %s", image, id, ids[ref(image)])
		}
	}
	for _, id := range ids {
		if err := svc.Remove(id); err != nil {
			t.Error(err)
		}
	}
	assertEmpty(t, svc)
	if blobs, _ := filepath.Glob(filepath.Join(root, "blobs", "sha256", "*")); len(blobs) != 0 {
		t.Fatalf("blobs left: %v", blobs)
	}
}

func TestVersion(t *testing.T) {
	if !regexp.MustCompile(`^\d+\.\d+\.\d+`).MatchString(imgsvc.Version()) {
		t.Fatalf("Version() = %q", imgsvc.Version())
	}
}

// The registry options reach the library: a certs.d root for the registry's
// CA, credentials from auth.json or Docker's config.json, and a
// registries.conf whose alias resolves a short name.
func TestRegistryFiles(t *testing.T) {
	image := secureAddr + "/fixture/small:a"
	certs := filepath.Join(secureDir, "certs.d")
	pull := func(opts *imgsvc.Options, name string) (string, error) {
		svc, _ := open(t, opts)
		return svc.Pull(context.Background(), name, nil)
	}
	if _, err := pull(&imgsvc.Options{CertsDir: certs}, image); !errors.Is(err, imgsvc.ErrUnauthenticated) {
		t.Errorf("CA, no credentials: %v, want ErrUnauthenticated", err)
	}
	_, err := pull(&imgsvc.Options{AuthFile: filepath.Join(secureDir, "auth.json")}, image)
	if !errors.Is(err, imgsvc.ErrUnavailable) || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("credentials, no CA: %v, want a certificate error", err)
	}
	id, err := pull(&imgsvc.Options{CertsDir: certs, AuthFile: filepath.Join(secureDir, "auth.json")}, image)
	if err != nil || !imageID.MatchString(id) {
		t.Fatalf("CertsDir + AuthFile: %q %v", id, err)
	}
	if id2, err := pull(&imgsvc.Options{CertsDir: certs, DockerConfig: filepath.Join(secureDir, "docker", "config.json")},
		image); err != nil || id2 != id {
		t.Errorf("CertsDir + DockerConfig: %q %v, want %s", id2, err, id)
	}

	svc, _ := open(t, &imgsvc.Options{
		RegistriesConf: filepath.Join(secureDir, "registries.conf"),
		CertsDir:       certs,
		AuthFile:       filepath.Join(secureDir, "auth.json"),
	})
	if got, err := svc.Pull(context.Background(), "securesmall:a", nil); err != nil || got != id {
		t.Fatalf("alias securesmall:a: %q %v, want %s", got, err, id)
	}
	st, err := svc.Status("securesmall:a", false)
	if err != nil || st == nil || len(st.Image.RepoTags) != 1 || st.Image.RepoTags[0] != image {
		t.Fatalf("Status(securesmall:a): %+v %v", st, err)
	}
}

func TestRegistriesConfRefused(t *testing.T) {
	_, err := imgsvc.Open(t.TempDir(), &imgsvc.Options{RegistriesConf: "/nonexistent/registries.conf"})
	if !errors.Is(err, imgsvc.ErrInvalidArgument) || !strings.Contains(err.Error(), "/nonexistent/registries.conf") {
		t.Errorf("missing registries.conf: %v", err)
	}
	conf := filepath.Join(t.TempDir(), "registries.conf")
	if err := os.WriteFile(conf, []byte("[[registry]]\nprefix = \"x\"\nblocked = maybe\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = imgsvc.Open(t.TempDir(), &imgsvc.Options{RegistriesConf: conf})
	if !errors.Is(err, imgsvc.ErrInvalidArgument) || !strings.Contains(err.Error(), conf+": line 3") {
		t.Errorf("invalid registries.conf: %v", err)
	}
	// A blocked registry is permission denied.
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("[[registry]]\nprefix = %q\nblocked = true\n", registry)), 0o644); err != nil {
		t.Fatal(err)
	}
	svc, _ := open(t, &imgsvc.Options{RegistriesConf: conf})
	if _, err := svc.Pull(context.Background(), ref("fixture/small:a"), nil); !errors.Is(err, imgsvc.ErrPermissionDenied) {
		t.Errorf("blocked registry: %v, want ErrPermissionDenied", err)
	}
	assertEmpty(t, svc)
}

// Fsck re-hashes the blobs and names a corrupt one precisely; repair
// removes it and the image that needed it.
func TestFsck(t *testing.T) {
	svc, root := open(t, nil)
	report, err := svc.Fsck(false)
	if err != nil || !report.Clean || len(report.Problems) != 0 || report.BlobsChecked != 0 {
		t.Fatalf("empty store: %+v %v", report, err)
	}
	var layers []string
	id, err := svc.Pull(context.Background(), ref("fixture/debian:v1"), &imgsvc.PullOptions{
		Progress: func(p imgsvc.Progress) {
			if p.Kind == imgsvc.ProgressLayerDone && p.Digest != "" {
				layers = append(layers, p.Digest)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	blobs, _ := filepath.Glob(filepath.Join(root, "blobs", "sha256", "*"))
	if report, err := svc.Fsck(false); err != nil || !report.Clean || report.BlobsChecked != len(blobs) {
		t.Fatalf("after a pull: %+v %v (%d blobs)", report, err, len(blobs))
	}

	// Flip a byte in the middle of a layer.
	var layer string
	for _, d := range layers {
		if d != id {
			layer = d
		}
	}
	path := filepath.Join(root, "blobs", "sha256", strings.TrimPrefix(layer, "sha256:"))
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0xff
	os.Chmod(path, 0o644)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	actual := fmt.Sprintf("sha256:%x", sha256.Sum256(data))

	corrupt := fmt.Sprintf("blob %s is corrupt: its content hashes to %s", layer, actual)
	incomplete := fmt.Sprintf("image %s is incomplete", id)
	report, err = svc.Fsck(false)
	if err != nil || report.Clean || !slices.Contains(report.Problems, corrupt) ||
		!slices.Contains(report.Problems, incomplete) || len(report.Repaired) != 0 ||
		!slices.Equal(report.Remaining, report.Problems) {
		t.Fatalf("corrupt layer: %+v %v\nwant %q and %q", report, err, corrupt, incomplete)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("a check without repair touched the blob: %v", err)
	}

	report, err = svc.Fsck(true)
	if err != nil || !report.Clean || len(report.Remaining) != 0 ||
		!slices.Contains(report.Repaired, "deleted corrupt blob "+layer) {
		t.Fatalf("repair: %+v %v", report, err)
	}
	assertEmpty(t, svc)
	if again := mustPull(t, svc, ref("fixture/debian:v1")); again != id {
		t.Fatalf("pull after repair: %s, want %s", again, id)
	}
	if report, err := svc.Fsck(false); err != nil || !report.Clean {
		t.Fatalf("after pulling again: %+v %v", report, err)
	}
}

// A full disk is ErrStorageFull and leaves the store intact. The test runs
// itself again with files limited to 256 KiB (ulimit -f) and SIGXFSZ
// ignored: writes past the limit then fail with EFBIG, as on a full disk.
func TestStorageFull(t *testing.T) {
	if root := os.Getenv("IMGSVC_GO_STORAGE_FULL_ROOT"); root != "" {
		signal.Ignore(syscall.SIGXFSZ)
		svc, err := imgsvc.Open(root, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer svc.Close()
		_, err = svc.Pull(context.Background(), ref("fixture/debian:v1"), nil)
		var e *imgsvc.Error
		if !errors.Is(err, imgsvc.ErrStorageFull) || !errors.As(err, &e) || e.Code != 8 {
			t.Fatalf("Pull with a full disk: %v, want ErrStorageFull", err)
		}
		assertEmpty(t, svc)
		return
	}
	root := t.TempDir()
	child := exec.Command("sh", "-c", `ulimit -f 256 && exec "$0" "$@"`, os.Args[0],
		"-test.run=^TestStorageFull$", "-test.count=1", "-test.v")
	child.Env = append(os.Environ(), "IMGSVC_GO_STORAGE_FULL_ROOT="+root, "IMGSVC_TEST_REGISTRY="+registry,
		"IMGSVC_TEST_SECURE_DIR="+secureDir)
	if out, err := child.CombinedOutput(); err != nil || !strings.Contains(string(out), "--- PASS: TestStorageFull") {
		t.Fatalf("child: %v\n%s", err, out)
	}
	svc, err := imgsvc.Open(root, nil)
	if err != nil {
		t.Fatalf("Open after a full disk: %v", err)
	}
	defer svc.Close()
	assertEmpty(t, svc)
	mustPull(t, svc, ref("fixture/debian:v1"))
}
