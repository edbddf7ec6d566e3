// Fuzz harness: a bare safetensors file (io::SafetensorsFile): header parsing, then every
// tensor read as float in its stored shape. Input: the whole .safetensors file.

#include <depass/io/Safetensors.hpp>

#include "FuzzSupport.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace depass;
  const std::string path = fuzz::write_file(
      "model.safetensors", std::string(reinterpret_cast<const char*>(data), size));
  fuzz::expect_only_format_errors([&] {
    const io::SafetensorsFile file = io::SafetensorsFile::open(path);
    for (const std::string& name : file.names()) {
      const io::TensorInfo& t = file.info(name);
      // Each tensor may be refused on its own (dtype, rank); keep going with the others.
      fuzz::expect_only_format_errors([&] {
        if (t.shape.size() == 2) {
          const RowMatrix<float> m = file.matrix<float>(name);
          if (static_cast<std::uint64_t>(m.size()) != t.element_count)
            fuzz::finding("safetensors", "matrix size differs from the header's element count");
        } else {
          const Vector<float> v = file.vector<float>(name);
          if (static_cast<std::uint64_t>(v.size()) != t.element_count)
            fuzz::finding("safetensors", "vector size differs from the header's element count");
        }
      });
    }
  });
  return 0;
}
