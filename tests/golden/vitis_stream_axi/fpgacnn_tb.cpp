// fpgacnn C-simulation testbench for myproject (generated from myproject_test.cpp; do not edit).
//
// Usage: fpgacnn_tb INPUTS OUTPUTS [FIRST [COUNT [EXPECTED]]]
//   INPUTS    one sample a line, {(8*8*1)} numbers separated by blanks
//   OUTPUTS   written here: one line per sample, every output value printed exactly
//   FIRST     index of the first sample to run (default 0); blank lines are not samples
//   COUNT     number of samples to run (default -1: all)
//   EXPECTED  optional: the QKeras outputs, one line per sample; each sample is checked
//             against its line (every value must be equal), the exit status is 1 on a mismatch
// Run it from the project directory: the weights are read from firmware/weights.
// C++0x is enough (vendor C simulation and co-simulation compile it with -std=c++0x).
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "firmware/myproject.h"
#include "firmware/nnet_utils/nnet_helpers.h"

namespace nnet {
bool trace_enabled = false;
std::map<std::string, void *> *trace_outputs = NULL;
size_t trace_type_size = sizeof(double);
} // namespace nnet

namespace fpgacnn_tb {

// The values of the current sample, as printed, for the check against EXPECTED.
std::vector<double> values;
std::ifstream expected;
bool checking = false;
long mismatches = 0, checked_values = 0;

// Exact text for one value: fixed-point types up to 53 bits are exactly representable
// as a double and printed with 17 significant digits; wider ones as their exact decimal.
inline void put(std::ostream &out, double v) {
    values.push_back(v);
    out << v;
}
template <int W, int I, bool S, ap_q_mode Q, ap_o_mode O, int N>
void put(std::ostream &out, const ap_fixed_base<W, I, S, Q, O, N> &v) {
    values.push_back(v.to_double());
    if (W <= 53)
        out << v.to_double();
    else
        out << v.to_string(10);
}
template <int W, bool S> void put(std::ostream &out, const ap_int_base<W, S> &v) {
    values.push_back(v.to_double());
    out << v.to_string(10);
}

template <class res_T, size_t SIZE> void write(hls::stream<res_T> &result, std::ostream &out, bool &first) {
    for (size_t i = 0; i < SIZE / res_T::size; i++) {
        res_T pack = result.read();
        for (size_t j = 0; j < res_T::size; j++) {
            if (!first)
                out << ' ';
            first = false;
            put(out, pack[j]);
        }
    }
}

template <class res_T, size_t SIZE> void write(res_T result[SIZE], std::ostream &out, bool &first) {
    for (size_t i = 0; i < SIZE; i++) {
        if (!first)
            out << ' ';
        first = false;
        put(out, result[i]);
    }
}

bool parse_long(const char *s, long &v) {
    char *end = NULL;
    errno = 0;
    v = std::strtol(s, &end, 10);
    return errno == 0 && end != s && *end == '\0';
}

// Numbers on the next non-blank line of `in`; false at the end or on text that is not a number.
bool next_row(std::istream &in, std::vector<double> &row) {
    std::string text;
    while (std::getline(in, text)) {
        if (text.find_first_not_of(" \t\r") == std::string::npos)
            continue;
        row.clear();
        const char *p = text.c_str();
        for (;;) {
            char *end = NULL;
            double v = std::strtod(p, &end);
            if (end == p)
                break;
            row.push_back(v);
            p = end;
        }
        while (*p == ' ' || *p == '\t' || *p == '\r')
            p++;
        return *p == '\0';
    }
    return false;
}

size_t argmax(const std::vector<double> &v) {
    size_t best = 0;
    for (size_t i = 1; i < v.size(); i++)
        if (v[i] > v[best])
            best = i;
    return best;
}

// Compares the sample just printed with the next line of EXPECTED; false on a bad file.
bool check_sample(long index) {
    std::vector<double> want;
    if (!next_row(expected, want) || want.size() != values.size()) {
        std::cerr << "fpgacnn_tb: expected outputs for sample " << index << ": need " << values.size()
                  << " numbers" << std::endl;
        return false;
    }
    for (size_t i = 0; i < want.size(); i++)
        mismatches += values[i] != want[i];
    checked_values += want.size();
    return true;
}

} // namespace fpgacnn_tb

int main(int argc, char **argv) {
    if (argc < 3 || argc > 6) {
        std::cerr << "usage: " << argv[0] << " INPUTS OUTPUTS [FIRST [COUNT [EXPECTED]]]" << std::endl;
        return 2;
    }
    long first = 0, count = -1;
    if ((argc > 3 && (!fpgacnn_tb::parse_long(argv[3], first) || first < 0)) ||
        (argc > 4 && !fpgacnn_tb::parse_long(argv[4], count))) {
        std::cerr << "fpgacnn_tb: FIRST must be an integer >= 0 and COUNT an integer" << std::endl;
        return 2;
    }
    std::ifstream fin(argv[1]);
    if (!fin.is_open()) {
        std::cerr << "fpgacnn_tb: cannot open input file " << argv[1] << std::endl;
        return 2;
    }
    std::ofstream fout(argv[2]);
    if (!fout.is_open()) {
        std::cerr << "fpgacnn_tb: cannot open output file " << argv[2] << std::endl;
        return 2;
    }
    if (argc > 5) {
        fpgacnn_tb::expected.open(argv[5]);
        if (!fpgacnn_tb::expected.is_open()) {
            std::cerr << "fpgacnn_tb: cannot open expected-output file " << argv[5] << std::endl;
            return 2;
        }
        fpgacnn_tb::checking = true;
    }
    fout << std::setprecision(17);

    const size_t n_in = (8*8*1);
    std::vector<double> in;
    in.reserve(n_in);
    std::string line;
    long index = -1, done = 0;
    while ((count < 0 || done < count) && std::getline(fin, line)) {
        if (line.find_first_not_of(" \t\r") == std::string::npos)
            continue;
        index++;
        if (index < first) {
            std::vector<double> skip;
            if (fpgacnn_tb::checking)
                fpgacnn_tb::next_row(fpgacnn_tb::expected, skip);
            continue;
        }
        in.clear();
        const char *p = line.c_str();
        for (;;) {
            char *end = NULL;
            double v = std::strtod(p, &end);
            if (end == p)
                break;
            in.push_back(v);
            p = end;
        }
        while (*p == ' ' || *p == '\t' || *p == '\r')
            p++;
        if (*p != '\0' || in.size() != n_in) {
            std::cerr << "fpgacnn_tb: sample " << index << ": expected " << n_in << " numbers, got " << in.size()
                      << (*p != '\0' ? " and text that is not a number" : "") << std::endl;
            return 3;
        }

        hls::stream<input_t> input_1("input_1");
        nnet::copy_data<double, input_t, 0, 8*8*1>(in, input_1);
        hls::stream<result_t> layer7_out("layer7_out");

        myproject(input_1, layer7_out);

        bool first_value = true;
        fpgacnn_tb::values.clear();
        fpgacnn_tb::write<result_t, 10>(layer7_out, fout, first_value);
        fout << '\n';
        if (fpgacnn_tb::checking && !fpgacnn_tb::check_sample(index))
            return 3;
        done++;
    }
    fout.flush();
    if (!fout) {
        std::cerr << "fpgacnn_tb: error writing " << argv[2] << std::endl;
        return 4;
    }
    if (!fpgacnn_tb::checking) {
        std::cout << "fpgacnn_tb: " << done << " samples" << std::endl;
        return 0;
    }
    if (done == 0 || fpgacnn_tb::mismatches) {
        std::cout << "fpgacnn_tb: NOT bit-exact: " << fpgacnn_tb::mismatches << " mismatching values in "
                  << done << " samples" << std::endl;
        return 1;
    }
    std::cout << "fpgacnn_tb: bit-exact: " << done << " samples, " << fpgacnn_tb::checked_values
              << " values equal to the QKeras predictions" << std::endl;
    return 0;
}
