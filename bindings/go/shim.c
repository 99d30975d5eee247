// The C side of progress callbacks. Go closures never cross into C: the pull
// passes a runtime/cgo.Handle (an integer) as the callback's userdata, and
// this trampoline hands it back to the exported Go function.
#include <stdint.h>
#include "imgsvc.h"
#include "_cgo_export.h"

static int32_t imgsvc_go_trampoline(void *userdata, const imgsvc_progress *event) {
    return imgsvcGoProgress((uintptr_t)userdata, (imgsvc_progress *)event);
}

imgsvc_status imgsvc_go_pull(const imgsvc_service *service, const char *image, const char *auth_json,
                             uintptr_t handle, const imgsvc_cancel_token *cancel, char **out_image_id,
                             imgsvc_error **err) {
    return imgsvc_service_pull(service, image, auth_json, handle ? imgsvc_go_trampoline : NULL,
                               (void *)handle, cancel, out_image_id, err);
}
