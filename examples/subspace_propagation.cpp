// Subspace propagation: split a hidden state into a subspace and its orthogonal
// complement, carry both to the logits, and decode each part.
//
//   example_subspace_propagation [MODEL] [PROMPT] [LAYER]
//
// The subspace here is spanned by the unembedding rows of the model's final prediction
// and of its runner-up: "the directions that read out as those two words". At the
// boundary before the attention of LAYER (default: the middle layer), the state is split
// into its projection onto that 2-D span and the remainder; both are propagated with
// frozen attention/norms/neuron splits, and we ask which tokens each part promotes.
// Bases can equally come from a .npy file (depass::output::load_npy) -- see the
// `depass subspace` command.

#include <depass/depass.hpp>
#include <depass/output/Npy.hpp>

#include <cmath>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "ExampleSupport.hpp"

int main(int argc, char** argv) {
  try {
    const std::string path = example::model_path(argc, argv);
    const std::string prompt = argc > 2 ? argv[2] : "Once upon a time there was a little girl named Lily. She loved to play with her";
    const depass::io::LoadedModel<double> loaded = depass::io::load_model<double>(path);
    const depass::Model<double>& model = loaded.model;
    const depass::Tokenizer& tokenizer = example::tokenizer_of(loaded, path);
    const std::vector<int> ids = tokenizer.encode(prompt, true);
    const depass::Config& cfg = model.config();
    const int layer = argc > 3 ? std::stoi(argv[3]) : cfg.n_layers / 2;

    const Eigen::Index last = static_cast<Eigen::Index>(ids.size()) - 1;
    const Eigen::VectorXd logits = model.forward(ids).row(last).transpose();
    Eigen::Index first = 0;
    logits.maxCoeff(&first);
    Eigen::VectorXd rest = logits;
    rest(first) = -1e300;
    Eigen::Index second = 0;
    rest.maxCoeff(&second);

    // A D x 2 basis from the two unembedding rows (the engine orthogonalises it).
    Eigen::MatrixXd basis(cfg.dim, 2);
    basis.col(0) = model.weights().unembedding().row(first).transpose();
    basis.col(1) = model.weights().unembedding().row(second).transpose();
    // Round-trip through a .npy file, the way `depass subspace --basis` reads it.
    const std::string npy = depass::output::npy_bytes(depass::output::NpyArray::from_matrix(basis));
    const Eigen::MatrixXd basis_read = depass::output::to_matrix<double>(depass::output::parse_npy(npy, "basis"));

    const depass::Decomposer<double> decomposer(model);
    const auto result = decomposer.run(
        ids, depass::Initialisation<double>::subspaces(depass::Boundary::before_attention(layer), {basis_read}));
    std::cout << "state before the attention of layer " << layer << " split along the unembedding of '"
              << tokenizer.piece(static_cast<int>(first)) << "' and '" << tokenizer.piece(static_cast<int>(second)) << "'\n";
    const Eigen::VectorXd scores = result.component_logits(last, static_cast<int>(first));
    for (Eigen::Index m = 0; m < result.component_count(); ++m) {
      std::printf("  %-10s score for '%s' %+8.4f   decodes to:", result.labels()[static_cast<std::size_t>(m)].c_str(),
                  tokenizer.piece(static_cast<int>(first)).c_str(), scores(m));
      if ((result.components().component(m).row(last).array() == 0.0).all()) {
        std::printf(" (zero)\n");
        continue;
      }
      for (const auto& t : result.top_tokens(m, last, 5))
        std::printf(" '%s'", example::visible(tokenizer.piece(t.first)).c_str());
      std::printf("\n");
    }
    const double total = scores.sum(), logit = result.logit(last, static_cast<int>(first));
    std::printf("subspace + remainder + bias = %.10f, logit = %.10f\n", total, logit);
    if (std::abs(total - logit) > 1e-8 * std::max(1.0, std::abs(logit))) return 1;
    std::cout << "lossless: the parts add up to the logit\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "example_subspace_propagation: " << e.what() << "\n";
    return 1;
  }
}
