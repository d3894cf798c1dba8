// The harness's worker for natively built OpenFHE (with Intel HEXL where the build has it):
// the C++ side of wavis/bench/protocol.py, the same operations and checks as
// benchmarks/openfhe_ckks.py and benchmarks/openfhe_bootstrap.py (the PyPI wheel's workers).
//
// Built by `wavis bench setup --openfhe-src ...` (wavis/bench/native.py) against the OpenFHE of
// its cache; usage:
//     openfhe_native_worker ckks      '{"N":16384,"depth":10,"scale_bits":30,"first_bits":50,"dnum":11,"check_bits":8}'
//     openfhe_native_worker bootstrap '{"N":65536,"slots":16,"levels_after":10,"scale_mod_bits":50,
//                                       "first_mod_bits":60,"dnum":3,"level_budget":[2,2],"check_bits":8}'
// Protocol: one line "@@{ready...}" after key generation, then per request line
// {"op": name, "reps": k, "warmup": w} one line "@@{"op", "ms", "cpu_ms", "check"}"; {"quit": true}
// or end of input ends it. Times: wall ms (steady clock) and process CPU ms (all threads).
// CKKS ops: encode, encrypt (public key), decrypt_decode, add, multiply_relin_rescale, rotate (1),
// hoisted_rotations_8 (fast rotations 1..8). Bootstrap op: EvalBootstrap of a fresh ciphertext at
// one level above the bottom, uniform real inputs in [-1, 1] ("kind":"complex" for complex), checked
// for precision.
// Parameters: 128-bit (HEStd_128_classic) unless "security":"none"; HYBRID key switching with
// "dnum" digits (special primes chosen by OpenFHE); CKKS rescales FIXEDMANUAL, the bootstrap
// FLEXIBLEAUTO with one prime size ("scale_mod_bits") above the first ("first_mod_bits").
#include "openfhe.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <complex>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <functional>
#include <iostream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

using namespace lbcrypto;

// ---------------------------------------------------------------- minimal JSON field reading
// The harness's configs and requests are flat objects of numbers, strings and integer arrays.
static bool find_value(const std::string& js, const std::string& key, std::string& out) {
    std::string k = "\"" + key + "\"";
    size_t p      = js.find(k);
    if (p == std::string::npos)
        return false;
    p = js.find(':', p + k.size());
    if (p == std::string::npos)
        return false;
    ++p;
    while (p < js.size() && isspace(static_cast<unsigned char>(js[p])))
        ++p;
    size_t e = p;
    if (p < js.size() && js[p] == '"') {
        e = js.find('"', p + 1);
        out = js.substr(p + 1, e - p - 1);
        return true;
    }
    if (p < js.size() && js[p] == '[') {
        e = js.find(']', p);
        out = js.substr(p, e - p + 1);
        return true;
    }
    while (e < js.size() && js[e] != ',' && js[e] != '}')
        ++e;
    out = js.substr(p, e - p);
    return true;
}
static double num(const std::string& js, const std::string& key, double dflt) {
    std::string v;
    if (!find_value(js, key, v) || v == "null")
        return dflt;
    return std::atof(v.c_str());
}
static std::string str(const std::string& js, const std::string& key, const std::string& dflt) {
    std::string v;
    return find_value(js, key, v) ? v : dflt;
}
static std::vector<uint32_t> uints(const std::string& js, const std::string& key, std::vector<uint32_t> dflt) {
    std::string v;
    if (!find_value(js, key, v) || v.empty() || v[0] != '[')
        return dflt;
    std::vector<uint32_t> r;
    std::stringstream ss(v.substr(1, v.size() - 2));
    std::string item;
    while (std::getline(ss, item, ','))
        r.push_back(static_cast<uint32_t>(std::atoi(item.c_str())));
    return r;
}
static std::string jstr(const std::string& s) {
    std::string r = "\"";
    for (char c : s) {
        if (c == '"' || c == '\\')
            r += '\\';
        if (c == '\n') {
            r += "\\n";
            continue;
        }
        r += c;
    }
    return r + "\"";
}
static void emit(const std::string& obj) {
    std::cout << "@@" << obj << "\n" << std::flush;
}

// ---------------------------------------------------------------- timing and checks
static double cpu_ms() {
    timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}
static double error_bits(double max_abs) {  // wavis/bench/protocol.py error_bits
    return max_abs <= std::ldexp(1.0, -60) ? 60.0 : -std::log2(max_abs);
}
struct Check {
    bool ok;
    double bits;
    std::string detail;
};
struct Op {
    std::function<void()> run;  // keeps its output for the check
    std::function<Check()> check;
};

static std::string fmt(const char* f, double a, double b = 0) {
    char buf[160];
    snprintf(buf, sizeof buf, f, a, b);
    return buf;
}

static std::string answer(const std::string& name, Op& op, int reps, int warmup) {
    for (int i = 0; i < warmup; ++i)
        op.run();
    std::ostringstream ms, cpu;
    ms.precision(6);
    cpu.precision(6);
    for (int i = 0; i < std::max(1, reps); ++i) {
        auto t0   = std::chrono::steady_clock::now();
        double c0 = cpu_ms();
        op.run();
        double c1 = cpu_ms();
        auto t1   = std::chrono::steady_clock::now();
        ms << (i ? ", " : "") << std::chrono::duration<double, std::milli>(t1 - t0).count();
        cpu << (i ? ", " : "") << (c1 - c0);
    }
    Check c;
    try {
        c = op.check();
    }
    catch (const std::exception& e) {
        c = {false, 0, std::string("check raised: ") + e.what()};
    }
    std::ostringstream o;
    o << "{\"op\": " << jstr(name) << ", \"ms\": [" << ms.str() << "], \"cpu_ms\": [" << cpu.str()
      << "], \"check\": {\"ok\": " << (c.ok ? "true" : "false") << ", \"bits\": " << c.bits
      << ", \"detail\": " << jstr(c.detail) << "}}";
    return o.str();
}

static void serve(std::map<std::string, Op>& ops) {
    std::string line;
    while (std::getline(std::cin, line)) {
        if (line.find_first_not_of(" \t\r") == std::string::npos)
            continue;
        if (line.find("\"quit\"") != std::string::npos)
            break;
        std::string name = str(line, "op", "");
        auto it          = ops.find(name);
        if (it == ops.end()) {
            emit("{\"op\": " + jstr(name) + ", \"error\": " + jstr("unknown operation " + name) + "}");
            continue;
        }
        try {
            emit(answer(name, it->second, static_cast<int>(num(line, "reps", 1)),
                        static_cast<int>(num(line, "warmup", 0))));
        }
        catch (const std::exception& e) {
            emit("{\"op\": " + jstr(name) + ", \"error\": " + jstr(e.what()) + "}");
        }
    }
}

static std::string ops_list(const std::map<std::string, Op>& ops) {
    std::string r = "[";
    for (auto& kv : ops)
        r += (r.size() > 1 ? ", " : "") + jstr(kv.first);
    return r + "]";
}

static std::string common_info(CryptoContext<DCRTPoly>& cc) {
    const char* omp = getenv("OMP_NUM_THREADS");
    auto cp         = std::dynamic_pointer_cast<CryptoParametersRNS>(cc->GetCryptoParameters());
    uint32_t logq   = cp->GetElementParams()->GetModulus().GetMSB();
    uint32_t logqp  = cp->GetParamsQP()->GetModulus().GetMSB();
    std::string qbits = "[", pbits = "[";
    for (auto& p : cp->GetElementParams()->GetParams())
        qbits += (qbits.size() > 1 ? ", " : "") + std::to_string(p->GetModulus().GetMSB());
    for (auto& p : cp->GetParamsP()->GetParams())
        pbits += (pbits.size() > 1 ? ", " : "") + std::to_string(p->GetModulus().GetMSB());
    std::ostringstream o;
    o << "\"library\": \"openfhe-native\", \"version\": " << jstr(GetOPENFHEVersion())
#ifdef WITH_INTEL_HEXL
      << ", \"hexl\": true"
#else
      << ", \"hexl\": false"
#endif
      << ", \"threads\": " << jstr(omp ? omp : "unset") << ", \"ring_dim\": " << cc->GetRingDimension()
      << ", \"log_q\": " << logq << ", \"log_qp\": " << logqp << ", \"prime_bits\": " << qbits << "]"
      << ", \"special_bits\": " << pbits << "], \"dnum\": " << cp->GetNumPartQ();
    return o.str();
}

static std::vector<double> real_slots(CryptoContext<DCRTPoly>& cc, const PrivateKey<DCRTPoly>& sk,
                                      ConstCiphertext<DCRTPoly> ct, uint32_t slots) {
    Plaintext pt;
    cc->Decrypt(sk, ct, &pt);
    pt->SetLength(slots);
    return pt->GetRealPackedValue();
}

static Check close_to(const std::vector<double>& got, const std::vector<double>& want, double need) {
    double e = 0;
    for (size_t i = 0; i < want.size(); ++i)
        e = std::max(e, std::fabs(got[i] - want[i]));
    double b = error_bits(e);
    return {b >= need, b, fmt("%.1f bits (need %g)", b, need)};
}

static SecurityLevel security(const std::string& cfg) {
    return str(cfg, "security", "128") == "none" ? HEStd_NotSet : HEStd_128_classic;
}

// ---------------------------------------------------------------- ckks
static int run_ckks(const std::string& cfg) {
    uint32_t N = num(cfg, "N", 16384), dnum = num(cfg, "dnum", 0);
    double need = num(cfg, "check_bits", 8);
    CCParams<CryptoContextCKKSRNS> p;
    p.SetMultiplicativeDepth(num(cfg, "depth", 10));
    p.SetScalingModSize(num(cfg, "scale_bits", 30));
    p.SetFirstModSize(num(cfg, "first_bits", 50));
    p.SetRingDim(N);
    p.SetBatchSize(N / 2);
    p.SetSecurityLevel(security(cfg));
    p.SetScalingTechnique(FIXEDMANUAL);
    p.SetSecretKeyDist(UNIFORM_TERNARY);
    p.SetKeySwitchTechnique(HYBRID);
    if (dnum)
        p.SetNumLargeDigits(dnum);
    auto cc = GenCryptoContext(p);
    for (auto f : {PKE, KEYSWITCH, LEVELEDSHE, ADVANCEDSHE})
        cc->Enable(f);
    const uint32_t slots = cc->GetRingDimension() / 2, M = cc->GetCyclotomicOrder();
    auto kp = cc->KeyGen();
    cc->EvalMultKeyGen(kp.secretKey);
    cc->EvalRotateKeyGen(kp.secretKey, {1, 2, 3, 4, 5, 6, 7, 8});

    std::mt19937_64 rng(1);
    std::uniform_real_distribution<double> U(-1.0, 1.0);
    std::vector<double> x(slots), y(slots), sum(slots), prod(slots), rot1(slots);
    for (auto& v : x)
        v = U(rng);
    for (auto& v : y)
        v = U(rng);
    for (uint32_t i = 0; i < slots; ++i) {
        sum[i]  = x[i] + y[i];
        prod[i] = x[i] * y[i];
        rot1[i] = x[(i + 1) % slots];
    }
    Plaintext px = cc->MakeCKKSPackedPlaintext(x);
    auto cx = cc->Encrypt(kp.publicKey, px), cy = cc->Encrypt(kp.publicKey, cc->MakeCKKSPackedPlaintext(y));
    auto sk = kp.secretKey;

    Plaintext pout;
    Ciphertext<DCRTPoly> cout;
    std::vector<double> vout;
    std::vector<Ciphertext<DCRTPoly>> hout(8);
    auto dec = [&](ConstCiphertext<DCRTPoly> c) { return real_slots(cc, sk, c, slots); };
    std::map<std::string, Op> ops;
    ops["encode"]  = {[&] { pout = cc->MakeCKKSPackedPlaintext(x); },
                      [&] { return close_to(dec(cc->Encrypt(kp.publicKey, pout)), x, need); }};
    ops["encrypt"] = {[&] { cout = cc->Encrypt(kp.publicKey, px); }, [&] { return close_to(dec(cout), x, need); }};
    ops["decrypt_decode"] = {[&] { vout = dec(cx); }, [&] { return close_to(vout, x, need); }};
    ops["add"]            = {[&] { cout = cc->EvalAdd(cx, cy); }, [&] { return close_to(dec(cout), sum, need); }};
    ops["multiply_relin_rescale"] = {[&] { cout = cc->Rescale(cc->EvalMult(cx, cy)); },
                                     [&] { return close_to(dec(cout), prod, need); }};
    ops["rotate"] = {[&] { cout = cc->EvalRotate(cx, 1); }, [&] { return close_to(dec(cout), rot1, need); }};
    ops["hoisted_rotations_8"] = {[&] {
                                      auto pre = cc->EvalFastRotationPrecompute(cx);
                                      for (uint32_t s = 1; s <= 8; ++s)
                                          hout[s - 1] = cc->EvalFastRotation(cx, s, M, pre);
                                  },
                                  [&] {
                                      double low = 60;
                                      for (uint32_t s = 1; s <= 8; ++s) {
                                          std::vector<double> want(slots);
                                          for (uint32_t i = 0; i < slots; ++i)
                                              want[i] = x[(i + s) % slots];
                                          low = std::min(low, close_to(dec(hout[s - 1]), want, need).bits);
                                      }
                                      return Check{low >= need, low, fmt("%.1f bits over 8 rotations", low)};
                                  }};
    std::string wanted = str(cfg, "ops", "");
    for (auto it = ops.begin(); it != ops.end();)
        it = (!wanted.empty() && wanted.find("\"" + it->first + "\"") == std::string::npos) ? ops.erase(it) : ++it;
    emit("{\"ready\": true, \"info\": {" + common_info(cc) +
         ", \"secret\": \"uniform ternary\", \"scaling\": \"FIXEDMANUAL\", \"key_switching\": \"HYBRID\"}, \"ops\": " +
         ops_list(ops) + "}");
    serve(ops);
    return 0;
}

// ---------------------------------------------------------------- bootstrap
static int run_bootstrap(const std::string& cfg) {
    uint32_t N = num(cfg, "N", 65536), slots = num(cfg, "slots", 0), dnum = num(cfg, "dnum", 3);
    uint32_t levels_after = num(cfg, "levels_after", 10), cf = num(cfg, "correction_factor", 0);
    double need = num(cfg, "check_bits", 8);
    std::vector<uint32_t> budget = uints(cfg, "level_budget", {3, 3});
    std::string secret = str(cfg, "secret", "SPARSE_ENCAPSULATED");
    SecretKeyDist dist = secret == "UNIFORM_TERNARY" ? UNIFORM_TERNARY :
                         secret == "SPARSE_TERNARY"  ? SPARSE_TERNARY :
                                                       SPARSE_ENCAPSULATED;
    if (!slots)
        slots = N / 2;
    CCParams<CryptoContextCKKSRNS> p;
    p.SetSecretKeyDist(dist);
    p.SetSecurityLevel(security(cfg));
    p.SetRingDim(N);
    p.SetScalingTechnique(FLEXIBLEAUTO);
    p.SetScalingModSize(num(cfg, "scale_mod_bits", 50));
    p.SetFirstModSize(num(cfg, "first_mod_bits", 60));
    uint32_t boot_depth = FHECKKSRNS::GetBootstrapDepth(budget, dist);
    uint32_t depth      = levels_after + boot_depth;
    p.SetMultiplicativeDepth(depth);
    p.SetKeySwitchTechnique(HYBRID);
    p.SetNumLargeDigits(dnum);
    auto cc = GenCryptoContext(p);
    for (auto f : {PKE, KEYSWITCH, LEVELEDSHE, ADVANCEDSHE, FHE})
        cc->Enable(f);
    auto t0   = std::chrono::steady_clock::now();
    double c0 = cpu_ms();
    cc->EvalBootstrapSetup(budget, {0, 0}, slots, cf);
    auto kp = cc->KeyGen();
    cc->EvalMultKeyGen(kp.secretKey);
    cc->EvalBootstrapKeyGen(kp.secretKey, slots);
    double keygen_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    double keygen_cpu_s = (cpu_ms() - c0) / 1e3;

    std::mt19937_64 rng(1);
    std::uniform_real_distribution<double> U(-1.0, 1.0);
    // real inputs unless "kind" is "complex", as benchmarks/openfhe_bootstrap.py (complex inputs
    // came back from the wheel's EvalBootstrap at N = 2^15, 16 slots with 1.0 bits mean)
    bool cplx = str(cfg, "kind", "real") == "complex";
    std::vector<std::complex<double>> x(slots);
    for (auto& v : x)
        v = {U(rng), cplx ? U(rng) : 0.0};
    auto ct = cc->Encrypt(kp.publicKey, cc->MakeCKKSPackedPlaintext(x, 1, depth - 1, nullptr, slots));
    Ciphertext<DCRTPoly> out;
    std::map<std::string, Op> ops;
    ops["bootstrap"] = {[&] { out = cc->EvalBootstrap(ct); },
                        [&] {
                            Plaintext pt;
                            cc->Decrypt(kp.secretKey, out, &pt);
                            pt->SetLength(slots);
                            auto got    = pt->GetCKKSPackedValue();
                            double mx   = 0, mean = 0;
                            for (uint32_t i = 0; i < slots; ++i) {
                                double e = std::max(std::abs(got[i] - x[i]), std::ldexp(1.0, -60));
                                mx       = std::max(mx, e);
                                mean += -std::log2(e) / slots;
                            }
                            double low = error_bits(mx);
                            return Check{low >= need, low,
                                         fmt("precision mean %.1f / min %.1f bits", mean, low) +
                                             ", levels left " + std::to_string(depth - out->GetLevel())};
                        }};
    std::ostringstream o;
    o << "{\"ready\": true, \"info\": {" << common_info(cc) << ", \"secret\": " << jstr(secret)
      << ", \"level_budget\": [" << budget[0] << ", " << budget[1] << "], \"depth\": " << depth
      << ", \"boot_depth\": " << boot_depth << ", \"levels_after\": " << levels_after << ", \"slots\": " << slots
      << ", \"scaling\": \"FLEXIBLEAUTO\", \"scale_mod_bits\": " << num(cfg, "scale_mod_bits", 50)
      << ", \"first_mod_bits\": " << num(cfg, "first_mod_bits", 60) << ", \"inputs\": " << jstr(cplx ? "complex" : "real") << ", \"correction_factor\": " << cf
      << ", \"keygen_s\": " << keygen_s << ", \"keygen_cpu_s\": " << keygen_cpu_s << "}, \"ops\": " << ops_list(ops)
      << "}";
    emit(o.str());
    serve(ops);
    return 0;
}

int main(int argc, char** argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s ckks|bootstrap CONFIG_JSON\n", argv[0]);
        return 2;
    }
    std::string kind = argv[1], cfg = argv[argc - 1];
    try {
        if (kind == "ckks")
            return run_ckks(cfg);
        if (kind == "bootstrap")
            return run_bootstrap(cfg);
        emit("{\"ready\": false, \"error\": " + jstr("unknown kind " + kind) + "}");
        return 2;
    }
    catch (const std::exception& e) {
        emit("{\"ready\": false, \"error\": " + jstr(e.what()) + "}");
        return 1;
    }
}
