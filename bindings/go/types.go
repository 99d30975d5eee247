package imgsvc

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// Options configure a Service. The zero value means the defaults.
type Options struct {
	// Pinned image names reported as pinned: exact normalized names, or
	// "prefix*".
	Pinned []string
	// MaxParallelDownloads is the number of blobs one pull fetches at once,
	// 1..64; 0 means the default (4).
	MaxParallelDownloads int
	// ProgressTimeout fails a pull that receives nothing for this long; 0
	// means the default (5 minutes), a negative value means never.
	ProgressTimeout time.Duration
	// ConnectTimeout bounds connecting to a registry; 0 means the default
	// (30 seconds).
	ConnectTimeout time.Duration

	// The registry configuration files. None is read unless named here, or
	// unless SystemRegistryConfig is set; "" means the default.

	// RegistriesConf is a containers-registries.conf v2 file: short-name
	// search and aliases, mirrors, insecure and blocked registries. It must
	// exist; Open fails with ErrInvalidArgument, naming the file and line,
	// when it is missing or invalid.
	RegistriesConf string
	// RegistriesConfDir is its drop-in directory (default:
	// RegistriesConf + ".d").
	RegistriesConfDir string
	// AuthFile is a containers auth.json with credentials, read first.
	AuthFile string
	// DockerConfig is a Docker config.json with credentials (the file, not
	// its directory), read after AuthFile.
	DockerConfig string
	// CertsDir is a certs.d root holding one "<host:port>/" directory per
	// registry: CA certificates "*.crt", and "client.cert" with
	// "client.key" for mutual TLS.
	CertsDir string
	// SystemRegistryConfig starts from the usual locations, those that
	// exist: /etc/containers/registries.conf and its .d directory,
	// $REGISTRY_AUTH_FILE or the containers auth.json,
	// $DOCKER_CONFIG/config.json or ~/.docker/config.json, and
	// /etc/containers/certs.d. Each path field set above replaces one of
	// them.
	SystemRegistryConfig bool

	// NoUnpack stores layers without unpacking them while pulling; Rootfs
	// and ExportRootfs then unpack on demand.
	NoUnpack bool
	// MaxLayerBytes refuses (ErrIntegrity) a layer that uncompresses to more
	// bytes; 0 means the default (64 GiB).
	MaxLayerBytes uint64
}

// The JSON options of imgsvc_service_open.
func (o *Options) json() (string, error) {
	if o == nil {
		return "", nil
	}
	m := map[string]any{}
	if o.Pinned != nil {
		m["pinned"] = o.Pinned
	}
	if o.MaxParallelDownloads != 0 {
		if o.MaxParallelDownloads < 0 {
			return "", fmt.Errorf("MaxParallelDownloads is negative (%d)", o.MaxParallelDownloads)
		}
		m["max_parallel_downloads"] = o.MaxParallelDownloads
	}
	switch {
	case o.ProgressTimeout < 0:
		m["progress_timeout_ms"] = 0
	case o.ProgressTimeout > 0:
		m["progress_timeout_ms"] = millis(o.ProgressTimeout)
	}
	if o.ConnectTimeout < 0 {
		return "", fmt.Errorf("ConnectTimeout is negative (%s)", o.ConnectTimeout)
	}
	if o.ConnectTimeout > 0 {
		m["connect_timeout_ms"] = millis(o.ConnectTimeout)
	}
	for key, path := range map[string]string{
		"registries_conf":   o.RegistriesConf,
		"registries_conf_d": o.RegistriesConfDir,
		"auth_file":         o.AuthFile,
		"docker_config":     o.DockerConfig,
		"certs_dir":         o.CertsDir,
	} {
		if path != "" {
			m[key] = path
		}
	}
	if o.SystemRegistryConfig {
		m["system_registry_config"] = true
	}
	if o.NoUnpack {
		m["unpack"] = false
	}
	if o.MaxLayerBytes != 0 {
		m["max_layer_bytes"] = o.MaxLayerBytes
	}
	b, err := json.Marshal(m)
	return string(b), err
}

// millis rounds up, so a positive duration never becomes 0 ("never").
func millis(d time.Duration) int64 {
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}

// Auth holds registry credentials for one pull, as the CRI AuthConfig.
type Auth struct {
	Username      string `json:"username,omitempty"`
	Password      string `json:"password,omitempty"`
	Auth          string `json:"auth,omitempty"` // base64 of "user:password"
	ServerAddress string `json:"serverAddress,omitempty"`
	IdentityToken string `json:"identityToken,omitempty"`
	RegistryToken string `json:"registryToken,omitempty"`
}

// String never shows secrets.
func (a Auth) String() string {
	return fmt.Sprintf("Auth{Username:%q ServerAddress:%q}", a.Username, a.ServerAddress)
}

// GoString never shows secrets either (for %#v).
func (a Auth) GoString() string {
	return a.String()
}

// Image is an image in the store, as the CRI Image message.
type Image struct {
	ID          string // "sha256:<hex of the config digest>"
	RepoTags    []string
	RepoDigests []string
	Size        uint64 // bytes of the image's blobs as stored
	UID         *int64 // set when the config's user is numeric; 0 is root
	Username    string // set when the config's user is a name
	Pinned      bool
}

// The CRI protojson form: 64-bit integers as strings, uid as a wrapper.
type imageJSON struct {
	ID          string   `json:"id"`
	RepoTags    []string `json:"repoTags"`
	RepoDigests []string `json:"repoDigests"`
	Size        uint64   `json:"size,string"`
	UID         *struct {
		Value int64 `json:"value,string"`
	} `json:"uid"`
	Username string `json:"username"`
	Pinned   bool   `json:"pinned"`
}

func (i imageJSON) image() Image {
	img := Image{ID: i.ID, RepoTags: i.RepoTags, RepoDigests: i.RepoDigests, Size: i.Size,
		Username: i.Username, Pinned: i.Pinned}
	if i.UID != nil {
		uid := i.UID.Value
		img.UID = &uid
	}
	return img
}

// ImageStatus is the answer for a present image.
type ImageStatus struct {
	Image Image
	// Info is set for verbose requests, as the CRI ImageStatusResponse
	// info: key "info" holds a JSON object with "imageSpec", the image
	// config.
	Info map[string]string
}

func parseStatus(text string) (*ImageStatus, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal([]byte(text), &top); err != nil {
		return nil, err
	}
	var img imageJSON
	if err := json.Unmarshal(top["status"], &img); err != nil {
		return nil, err
	}
	st := &ImageStatus{Image: img.image()}
	for k, v := range top {
		if k == "status" {
			continue
		}
		if st.Info == nil {
			st.Info = map[string]string{}
		}
		// A JSON string stays a string; objects keep their JSON text.
		var s string
		if json.Unmarshal(v, &s) == nil {
			st.Info[k] = s
		} else {
			st.Info[k] = string(v)
		}
	}
	return st, nil
}

// FilesystemUsage is the store's usage of its filesystem.
type FilesystemUsage struct {
	Timestamp  time.Time // when it was measured
	Mountpoint string    // the store's root directory
	UsedBytes  uint64
	InodesUsed uint64
}

func parseFsInfo(text string) (FilesystemUsage, error) {
	var resp struct {
		ImageFilesystems []struct {
			Timestamp string `json:"timestamp"`
			FsID      struct {
				Mountpoint string `json:"mountpoint"`
			} `json:"fsId"`
			UsedBytes struct {
				Value uint64 `json:"value,string"`
			} `json:"usedBytes"`
			InodesUsed struct {
				Value uint64 `json:"value,string"`
			} `json:"inodesUsed"`
		} `json:"imageFilesystems"`
	}
	if err := json.Unmarshal([]byte(text), &resp); err != nil {
		return FilesystemUsage{}, err
	}
	if len(resp.ImageFilesystems) != 1 {
		return FilesystemUsage{}, fmt.Errorf("expected one image filesystem, got %d", len(resp.ImageFilesystems))
	}
	fs := resp.ImageFilesystems[0]
	ns, err := strconv.ParseInt(fs.Timestamp, 10, 64)
	if err != nil {
		return FilesystemUsage{}, fmt.Errorf("timestamp %q: %w", fs.Timestamp, err)
	}
	return FilesystemUsage{Timestamp: time.Unix(0, ns), Mountpoint: fs.FsID.Mountpoint,
		UsedBytes: fs.UsedBytes.Value, InodesUsed: fs.InodesUsed.Value}, nil
}

// ProgressKind says what a Progress event reports.
type ProgressKind int

const (
	// ProgressResolved: Image is the resolved name, Digest the manifest
	// digest, Total the bytes to fetch, Layers the number of layers.
	ProgressResolved ProgressKind = 1
	// ProgressLayerStarted: a blob download began (Digest, Total).
	ProgressLayerStarted ProgressKind = 2
	// ProgressBytes: Done of Total bytes of blob Digest arrived.
	ProgressBytes ProgressKind = 3
	// ProgressLayerDone: blob Digest was downloaded and verified.
	ProgressLayerDone ProgressKind = 4
	// ProgressLayerSkipped: blob Digest was already in the store.
	ProgressLayerSkipped ProgressKind = 5
	// ProgressCommitted: the image is recorded; Image is its id.
	ProgressCommitted ProgressKind = 6
)

func (k ProgressKind) String() string {
	switch k {
	case ProgressResolved:
		return "resolved"
	case ProgressLayerStarted:
		return "layer_started"
	case ProgressBytes:
		return "bytes"
	case ProgressLayerDone:
		return "layer_done"
	case ProgressLayerSkipped:
		return "layer_skipped"
	case ProgressCommitted:
		return "committed"
	}
	return "ProgressKind(" + strconv.Itoa(int(k)) + ")"
}

// Progress is one event of a pull.
type Progress struct {
	Kind   ProgressKind
	Image  string // Resolved: the resolved name; Committed: the image id
	Digest string // Resolved: the manifest digest; layer events: the blob digest
	Done   uint64 // bytes of this blob so far
	Total  uint64 // Resolved: bytes of the image; layer events: the blob size
	Layers int    // Resolved: the number of layers
}

// PullOptions are the optional parts of a pull.
type PullOptions struct {
	// Auth overrides the credentials for this pull.
	Auth *Auth
	// Progress, when set, is called for each event, on the goroutine that
	// called Pull, during the call. To stop the pull, cancel its context.
	// A panic in Progress stops the pull and is raised again by Pull.
	// Progress may call the Service's other methods, but not Close: Close
	// waits for the Pull that is waiting for Progress.
	Progress func(Progress)
}

// FsckReport is what a consistency check of the store found and, with
// repair, what it fixed.
type FsckReport struct {
	// Clean is true when no problem remains.
	Clean bool `json:"clean"`
	// Problems found, one sentence each, e.g. "blob sha256:... is corrupt:
	// its content hashes to sha256:..." or "image sha256:... is incomplete".
	Problems []string `json:"problems"`
	// Repaired lists what repair did, one sentence each.
	Repaired []string `json:"repaired"`
	// Remaining lists the problems still there (all of them without repair).
	Remaining []string `json:"remaining"`
	// BlobsChecked is the number of blobs whose digest and size were verified.
	BlobsChecked int `json:"blobsChecked"`
}
