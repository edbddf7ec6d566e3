// The one Catch2 main shared by every depass_test_<area> executable.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
