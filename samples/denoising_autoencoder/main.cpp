// denoising_autoencoder: a convolutional autoencoder learns to remove noise.
//
// Fashion-MNIST images get Gaussian noise (sigma 0.3, clamped to [0, 1]);
// the network (the zoo's conv autoencoder: conv-pool-conv-pool, then
// conv-upsample-conv-upsample-conv-sigmoid) is trained to output the clean
// image. At the end it writes a PNG grid, one column per test image: the
// noisy input, the reconstruction, the clean image. A picture says more than
// a loss value here.
//
//   denoising_autoencoder [OUT.png] [EPOCHS (default 2)] [--max-steps N]
#include <soma/soma.h>

#include <zlib.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace {

/// Adds N(0, sigma^2) noise from Philox (deterministic per batch) and clamps.
soma::Array noisy(const soma::Array &clean, uint64_t batchIndex, float sigma) {
  soma::Array out = clean.clone();
  soma::Philox rng{7, batchIndex};
  float *p = out.data<float>();
  for (int64_t i = 0; i < out.numel(); ++i)
    p[i] = std::fmin(1.0f, std::fmax(0.0f, p[i] + sigma * rng.normal(static_cast<uint64_t>(i))));
  return out;
}

double mse(const soma::Array &a, const soma::Array &b, int64_t count) {
  double s = 0;
  for (int64_t i = 0; i < count; ++i) {
    double d = a.data<float>()[i] - b.data<float>()[i];
    s += d * d;
  }
  return s / static_cast<double>(count);
}

/// Writes an 8-bit grayscale PNG (one IDAT chunk, zlib-compressed rows).
bool writePng(const std::string &path, const std::vector<uint8_t> &pixels, int width, int height) {
  auto be32 = [](std::string &s, uint32_t v) {
    for (int i = 3; i >= 0; --i)
      s += static_cast<char>((v >> (8 * i)) & 0xff);
  };
  auto chunk = [&](std::string &out, const char *type, const std::string &data) {
    be32(out, static_cast<uint32_t>(data.size()));
    std::string body = std::string(type, 4) + data;
    out += body;
    be32(out, static_cast<uint32_t>(crc32(0, reinterpret_cast<const Bytef *>(body.data()), body.size())));
  };
  std::string ihdr;
  be32(ihdr, static_cast<uint32_t>(width));
  be32(ihdr, static_cast<uint32_t>(height));
  ihdr += std::string("\x08\x00\x00\x00\x00", 5); // 8-bit, grayscale, deflate, no filter, no interlace
  std::string raw;
  for (int y = 0; y < height; ++y) {
    raw += '\0'; // filter: none
    raw.append(reinterpret_cast<const char *>(&pixels[static_cast<size_t>(y) * width]), width);
  }
  uLongf size = compressBound(raw.size());
  std::string packed(size, '\0');
  if (compress2(reinterpret_cast<Bytef *>(packed.data()), &size, reinterpret_cast<const Bytef *>(raw.data()),
                raw.size(), 9) != Z_OK)
    return false;
  packed.resize(size);
  std::string png = "\x89PNG\r\n\x1a\n";
  chunk(png, "IHDR", ihdr);
  chunk(png, "IDAT", packed);
  chunk(png, "IEND", "");
  try {
    soma::write_file_atomic(path, png);
  } catch (const soma::Error &e) {
    std::fprintf(stderr, "denoising_autoencoder: %s\n", e.what());
    return false;
  }
  return true;
}

} // namespace

int main(int argc, char **argv) {
  std::string out = "denoising.png";
  int64_t epochs = 2, maxSteps = 0;
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--max-steps") == 0 && i + 1 < argc)
      maxSteps = std::atoll(argv[++i]);
    else
      positional.push_back(argv[i]);
  }
  if (!positional.empty())
    out = positional[0];
  if (positional.size() > 1)
    epochs = std::atoll(positional[1].c_str());
  try {
    const int64_t batch = 64;
    const float sigma = 0.3f;
    soma::Graph g("denoiser", /*seed=*/3);
    soma::Tensor x = g.input("x", {batch, 1, 28, 28});     // noisy
    soma::Tensor clean = g.input("clean", {batch, 1, 28, 28});
    soma::Tensor h = soma::max_pool2d(soma::relu(soma::nn::conv2d(x, 16, 3, {.padding = 1})), 2);
    h = soma::max_pool2d(soma::relu(soma::nn::conv2d(h, 8, 3, {.padding = 1})), 2);   // 8 x 7 x 7
    h = soma::upsample2d(soma::relu(soma::nn::conv2d(h, 8, 3, {.padding = 1})), 2);
    h = soma::upsample2d(soma::relu(soma::nn::conv2d(h, 16, 3, {.padding = 1})), 2);
    soma::Tensor recon = soma::sigmoid(soma::nn::conv2d(h, 1, 3, {.padding = 1, .weight_init = soma::init::xavier_uniform()}));
    g.output("reconstruction", recon);
    soma::Tensor loss = soma::mse(recon, clean);

    soma::data::Dataset train = soma::data::fashion_mnist("train");
    soma::data::Dataset test = soma::data::fashion_mnist("test");
    train.x = train.x.reshaped({train.x.shape()[0], 1, 28, 28});
    test.x = test.x.reshaped({test.x.shape()[0], 1, 28, 28});
    soma::data::Loader loader(train, batch, true, 1);

    soma::TrainStep step = soma::compile_training(g, loss, soma::optim::Adam{{.lr = 2e-3}});
    for (int64_t epoch = 0; epoch < epochs && (maxSteps == 0 || step.step() < maxSteps); ++epoch) {
      soma::ProgressBar bar("epoch " + std::to_string(epoch + 1) + "/" + std::to_string(epochs),
                            loader.batches_per_epoch());
      double sum = 0;
      int64_t n = 0;
      for (const soma::data::Batch &b : loader.epoch(epoch)) {
        soma::Array input = noisy(b.x, static_cast<uint64_t>(step.step()), sigma);
        sum += step.run({{"x", input}, {"clean", b.x}}).loss;
        ++n;
        bar.update(n, sum / static_cast<double>(n), std::nan(""), n * batch);
        if (maxSteps > 0 && step.step() >= maxSteps)
          break;
      }
      bar.finish();
      std::printf("epoch %lld: training loss (MSE) %.5f\n", static_cast<long long>(epoch + 1),
                  sum / static_cast<double>(n));
    }

    // Denoise the first test batch with the trained parameters.
    soma::Inference fn = soma::compile_inference(g);
    fn.set_params(step.params());
    soma::data::Loader testLoader(test, batch, false);
    soma::data::Batch tb = testLoader.batch(0, 0);
    soma::Array input = noisy(tb.x, 1u << 30, sigma);
    soma::Array rec = fn.run({{"x", input}, {"clean", tb.x}})["reconstruction"];
    double noisyError = mse(input, tb.x, tb.x.numel()), recError = mse(rec, tb.x, tb.x.numel());
    std::printf("test batch: MSE of the noisy input %.5f, of the reconstruction %.5f\n", noisyError, recError);

    // The grid: 3 rows (noisy, reconstruction, clean) x 8 columns, 2-pixel gaps.
    const int cols = 8, cell = 28, gap = 2;
    int width = cols * (cell + gap) + gap, height = 3 * (cell + gap) + gap;
    std::vector<uint8_t> pixels(static_cast<size_t>(width) * height, 255);
    const soma::Array *rows[] = {&input, &rec, &tb.x};
    for (int r = 0; r < 3; ++r)
      for (int c = 0; c < cols; ++c)
        for (int y = 0; y < cell; ++y)
          for (int x2 = 0; x2 < cell; ++x2) {
            float v = rows[r]->data<float>()[c * 784 + y * 28 + x2];
            pixels[static_cast<size_t>(gap + r * (cell + gap) + y) * width + gap + c * (cell + gap) + x2] =
                static_cast<uint8_t>(std::lround(255.0f * std::fmin(1.0f, std::fmax(0.0f, v))));
          }
    if (!writePng(out, pixels, width, height))
      return 1;
    std::printf("wrote %s (rows: noisy input, reconstruction, clean image)\n", out.c_str());
    return recError < noisyError ? 0 : 1;
  } catch (const soma::Error &e) {
    std::fprintf(stderr, "denoising_autoencoder: %s\n", e.what());
    return 1;
  }
}
