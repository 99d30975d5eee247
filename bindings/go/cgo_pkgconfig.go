//go:build imgsvc_pkgconfig

package imgsvc

// The installed library (scripts/install-c.sh PREFIX), found by pkg-config.

/*
#cgo pkg-config: imgsvc
*/
import "C"
