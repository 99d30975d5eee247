/*
 * list: print the images in a store as CRI JSON ({"images": [...]}).
 *
 *   list ROOT [FILTER]
 *
 * FILTER is a name, name@digest, id or id prefix; then at most one image.
 */
#include <imgsvc.h>

#include <stdio.h>

int main(int argc, char **argv) {
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: %s ROOT [FILTER]\n", argv[0]);
        return 2;
    }
    imgsvc_service *svc = NULL;
    imgsvc_error *err = NULL;
    char *json = NULL;
    imgsvc_status rc = imgsvc_service_open(argv[1], NULL, &svc, &err);
    if (rc == IMGSVC_OK) rc = imgsvc_service_list(svc, argc == 3 ? argv[2] : NULL, &json, &err);
    if (rc != IMGSVC_OK) {
        fprintf(stderr, "list: %s: %s\n", imgsvc_status_name(rc), imgsvc_error_message(err));
        imgsvc_error_free(err);
        imgsvc_service_free(svc);
        return 1;
    }
    printf("%s\n", json);
    imgsvc_string_free(json);
    imgsvc_service_free(svc);
    return 0;
}
