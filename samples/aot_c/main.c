/* aot_c: runs the ahead-of-time compiled MLP from plain C.
 *
 *   soma export mlp -o mlp.mlir
 *   soma compile mlp.mlir --emit=obj,header,weights -o mlp/
 *   cc main.c mlp/mlp.o -Imlp -L/usr/lib/llvm-19/lib -lomp -lm -o aot_c_mlp
 *   ./aot_c_mlp mlp/mlp.weights.safetensors x.npy logits.npy
 *
 * Reads the input x (a float32 .npy of shape [64, 784]), runs mlp() and
 * writes the logits as a float32 .npy. Needs nothing but the object, the
 * generated header, libomp and libm.
 */
#include "mlp.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Reads a little-endian float32 C-order .npy file holding exactly `count`
 * elements. Returns 0 on success, -1 after printing why. */
static int read_npy_f32(const char *path, float *out, size_t count) {
  unsigned char magic[10];
  FILE *f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "aot_c: cannot open %s\n", path);
    return -1;
  }
  if (fread(magic, 1, 10, f) != 10 || memcmp(magic, "\x93NUMPY", 6) != 0) {
    fprintf(stderr, "aot_c: %s is not a .npy file\n", path);
    fclose(f);
    return -1;
  }
  size_t header = (size_t)magic[8] | ((size_t)magic[9] << 8);
  if (magic[6] != 1) { /* versions 2 and 3 have a 4-byte header length */
    unsigned char more[2];
    if (fread(more, 1, 2, f) != 2) {
      fclose(f);
      return -1;
    }
    header |= ((size_t)more[0] << 16) | ((size_t)more[1] << 24);
  }
  char *text = malloc(header + 1);
  if (!text || fread(text, 1, header, f) != header) {
    fprintf(stderr, "aot_c: %s: truncated header\n", path);
    free(text);
    fclose(f);
    return -1;
  }
  text[header] = 0;
  if (!strstr(text, "'<f4'") || strstr(text, "True")) {
    fprintf(stderr, "aot_c: %s: need a float32 C-order array\n", path);
    free(text);
    fclose(f);
    return -1;
  }
  free(text);
  if (fread(out, sizeof(float), count, f) != count || fgetc(f) != EOF) {
    fprintf(stderr, "aot_c: %s: expected exactly %zu float32 values\n", path, count);
    fclose(f);
    return -1;
  }
  fclose(f);
  return 0;
}

/* Writes a float32 .npy (version 1.0) of the given shape. */
static int write_npy_f32(const char *path, const float *data, const long *shape, int rank) {
  char dict[256];
  size_t count = 1;
  int n = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (");
  for (int i = 0; i < rank; ++i) {
    n += snprintf(dict + n, sizeof dict - n, "%ld%s", shape[i], rank == 1 ? "," : (i + 1 < rank ? ", " : ""));
    count *= (size_t)shape[i];
  }
  n += snprintf(dict + n, sizeof dict - n, "), }");
  size_t total = 10 + (size_t)n + 1;
  size_t pad = (64 - total % 64) % 64;
  FILE *f = fopen(path, "wb");
  if (!f) {
    fprintf(stderr, "aot_c: cannot write %s\n", path);
    return -1;
  }
  unsigned short len = (unsigned short)(n + pad + 1);
  fwrite("\x93NUMPY\x01\x00", 1, 8, f);
  fputc(len & 0xff, f);
  fputc(len >> 8, f);
  fwrite(dict, 1, (size_t)n, f);
  for (size_t i = 0; i < pad; ++i)
    fputc(' ', f);
  fputc('\n', f);
  size_t written = fwrite(data, sizeof(float), count, f);
  if (fclose(f) != 0 || written != count) {
    fprintf(stderr, "aot_c: error writing %s\n", path);
    return -1;
  }
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s WEIGHTS.safetensors X.npy LOGITS.npy\n", argv[0]);
    return 2;
  }
  float *x = malloc(sizeof(float) * MLP_X_NUMEL);
  float *w0 = malloc(sizeof(float) * MLP_DENSE0_WEIGHT_NUMEL);
  float *b0 = malloc(sizeof(float) * MLP_DENSE0_BIAS_NUMEL);
  float *w1 = malloc(sizeof(float) * MLP_DENSE1_WEIGHT_NUMEL);
  float *b1 = malloc(sizeof(float) * MLP_DENSE1_BIAS_NUMEL);
  float *w2 = malloc(sizeof(float) * MLP_DENSE2_WEIGHT_NUMEL);
  float *b2 = malloc(sizeof(float) * MLP_DENSE2_BIAS_NUMEL);
  float *logits = malloc(sizeof(float) * MLP_LOGITS_NUMEL);
  void *workspace = aligned_alloc(MLP_WORKSPACE_ALIGNMENT,
                                  MLP_WORKSPACE_BYTES ? MLP_WORKSPACE_BYTES : MLP_WORKSPACE_ALIGNMENT);
  if (!x || !w0 || !b0 || !w1 || !b1 || !w2 || !b2 || !logits || !workspace) {
    fprintf(stderr, "aot_c: out of memory\n");
    return 1;
  }
  if (mlp_load_weights(argv[1], w0, b0, w1, b1, w2, b2) != 0)
    return 1;
  if (read_npy_f32(argv[2], x, MLP_X_NUMEL) != 0)
    return 1;
  mlp(x, w0, b0, w1, b1, w2, b2, logits, workspace);
  long shape[] = MLP_LOGITS_SHAPE;
  if (write_npy_f32(argv[3], logits, shape, MLP_LOGITS_RANK) != 0)
    return 1;
  printf("aot_c: wrote %s\n", argv[3]);
  return 0;
}
