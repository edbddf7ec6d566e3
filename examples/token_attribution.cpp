// Token attribution: which input tokens made the model predict its next token?
//
//   example_token_attribution [MODEL] [PROMPT]
//
// MODEL is a llama2.c .bin checkpoint (its tok<vocab>.bin next to it) or a Hugging Face
// model directory; default: stories260K from the shared models (or $DEPASS_EXAMPLE_MODEL).
// Prints every token's share of the predicted token's logit and checks that the shares
// plus the bias add up to the logit exactly (DePass is lossless).

#include <depass/depass.hpp>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>

#include "ExampleSupport.hpp"

int main(int argc, char** argv) {
  try {
    const std::string path = example::model_path(argc, argv);
    const std::string prompt =
        argc > 2 ? argv[2] : "Once upon a time there was a little girl named Lily. She loved to play with her";
    const depass::io::LoadedModel<double> loaded = depass::io::load_model<double>(path);
    const depass::Model<double>& model = loaded.model;
    const depass::Tokenizer& tokenizer = example::tokenizer_of(loaded, path);
    const std::vector<int> ids = tokenizer.encode(prompt, true);

    // One pass: every token is a component; the engine propagates them to the logits.
    const depass::Decomposer<double> decomposer(model);
    const depass::Decomposition<double> result = decomposer.run(ids, depass::Initialisation<double>::tokens());

    const Eigen::Index last = static_cast<Eigen::Index>(ids.size()) - 1;
    Eigen::Index target = 0;
    result.logits(last).maxCoeff(&target);
    const Eigen::VectorXd scores = result.component_logits(last, static_cast<int>(target));
    const double logit = result.logit(last, static_cast<int>(target));

    std::cout << "prompt: " << prompt << "\n";
    std::cout << "predicted next token: '" << tokenizer.piece(static_cast<int>(target)) << "' (logit " << logit << ")\n";
    for (std::size_t i = 0; i < ids.size(); ++i)
      std::printf("  %3zu %-12s %+9.4f\n", i, ("'" + example::visible(tokenizer.piece(ids[i])) + "'").c_str(),
                  scores(static_cast<Eigen::Index>(i)));
    const double bias = scores(result.bias_component());
    const double total = scores.head(static_cast<Eigen::Index>(ids.size())).sum() + bias;
    std::printf("  bias %+9.4f\n", bias);
    std::printf("sum of token scores + bias = %.10f, logit = %.10f\n", total, logit);
    if (std::abs(total - logit) > 1e-8 * std::max(1.0, std::abs(logit))) {
      std::cerr << "scores do not add up to the logit\n";
      return 1;
    }
    std::cout << "lossless: scores + bias == logit\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "example_token_attribution: " << e.what() << "\n";
    return 1;
  }
}
