/*
 * inspect: print one image with its config as JSON, like `crictl inspecti`.
 *
 *   inspect ROOT IMAGE
 *
 * IMAGE is a name, name@digest, id or id prefix. Exit status 0 when the image
 * is there, 3 when it is not (which is an answer, not an error), 1 on errors.
 */
#include <imgsvc.h>

#include <stdio.h>

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s ROOT IMAGE\n", argv[0]);
        return 2;
    }
    imgsvc_service *svc = NULL;
    imgsvc_error *err = NULL;
    char *json = NULL;
    imgsvc_status rc = imgsvc_service_open(argv[1], NULL, &svc, &err);
    if (rc == IMGSVC_OK) rc = imgsvc_service_status(svc, argv[2], true, &json, &err);
    imgsvc_service_free(svc);
    if (rc != IMGSVC_OK) {
        fprintf(stderr, "inspect %s: %s: %s\n", argv[2], imgsvc_status_name(rc), imgsvc_error_message(err));
        imgsvc_error_free(err);
        return 1;
    }
    if (json == NULL) {
        fprintf(stderr, "%s: no such image\n", argv[2]);
        return 3;
    }
    printf("%s\n", json);
    imgsvc_string_free(json);
    return 0;
}
