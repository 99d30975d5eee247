/*
 * fsinfo: print the store's filesystem usage as CRI JSON
 * ({"imageFilesystems": [...], "containerFilesystems": []}).
 *
 *   fsinfo ROOT
 */
#include <imgsvc.h>

#include <stdio.h>

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s ROOT\n", argv[0]);
        return 2;
    }
    imgsvc_service *svc = NULL;
    imgsvc_error *err = NULL;
    char *json = NULL;
    imgsvc_status rc = imgsvc_service_open(argv[1], NULL, &svc, &err);
    if (rc == IMGSVC_OK) rc = imgsvc_service_fs_info(svc, &json, &err);
    imgsvc_service_free(svc);
    if (rc != IMGSVC_OK) {
        fprintf(stderr, "fsinfo: %s: %s\n", imgsvc_status_name(rc), imgsvc_error_message(err));
        imgsvc_error_free(err);
        return 1;
    }
    printf("%s\n", json);
    imgsvc_string_free(json);
    return 0;
}
