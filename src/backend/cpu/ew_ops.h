/* ew_ops.h — the elementwise ops by arity (X-macro lists with their MLX dtype rules), their
 * enums and the params every elementwise node carries. Plain C with no Ponte dependencies:
 * the generated C of fused programs (backend/cpu/fused_jit.c) includes it too. */
#ifndef PONTE_BACKEND_CPU_EW_OPS_H
#define PONTE_BACKEND_CPU_EW_OPS_H

/* Dtype rules (the op layer applies them before a node is made; kernels then see inputs of
 * one dtype):
 *   SAME   output = input dtype (binary: the promoted dtype of both inputs)
 *   REAL   as SAME, but complex64 gives float32 (abs, real, imag)
 *   FLOAT  integer/bool inputs are cast to float32 first (MLX's at_least_float)
 *   BOOL   output bool (unary: any input; binary: inputs cast to the promoted dtype)
 *   INT    integer or bool inputs only (bitwise ops)
 *   SHIFT  as INT, with bool promoted to uint8 */
enum { PNK_SAME, PNK_REAL, PNK_FLOAT, PNK_BOOL, PNK_INT, PNK_SHIFT };

/* X(ENUM, public name, primitive name, rule, complex64 supported). Ops in the first list
 * have the plain public signature pn_<name>(a); the extra ones take more arguments. */
#define PNK_UNARY_OPS(X)                                                                       \
    X(ABS, abs, "Abs", PNK_REAL, 1)                                                            \
    X(NEGATIVE, negative, "Negative", PNK_SAME, 1)                                             \
    X(SIGN, sign, "Sign", PNK_SAME, 1)                                                         \
    X(SQRT, sqrt, "Sqrt", PNK_FLOAT, 1)                                                        \
    X(RSQRT, rsqrt, "Rsqrt", PNK_FLOAT, 1)                                                     \
    X(SQUARE, square, "Square", PNK_SAME, 1)                                                   \
    X(EXP, exp, "Exp", PNK_FLOAT, 1)                                                           \
    X(EXPM1, expm1, "Expm1", PNK_FLOAT, 0)                                                     \
    X(LOG, log, "Log", PNK_FLOAT, 1)                                                           \
    X(LOG1P, log1p, "Log1p", PNK_FLOAT, 1)                                                     \
    X(LOG2, log2, "Log2", PNK_FLOAT, 1)                                                        \
    X(LOG10, log10, "Log10", PNK_FLOAT, 1)                                                     \
    X(SIN, sin, "Sin", PNK_FLOAT, 1)                                                           \
    X(COS, cos, "Cos", PNK_FLOAT, 1)                                                           \
    X(TAN, tan, "Tan", PNK_FLOAT, 1)                                                           \
    X(ARCSIN, arcsin, "ArcSin", PNK_FLOAT, 1)                                                  \
    X(ARCCOS, arccos, "ArcCos", PNK_FLOAT, 1)                                                  \
    X(ARCTAN, arctan, "ArcTan", PNK_FLOAT, 1)                                                  \
    X(SINH, sinh, "Sinh", PNK_FLOAT, 1)                                                        \
    X(COSH, cosh, "Cosh", PNK_FLOAT, 1)                                                        \
    X(TANH, tanh, "Tanh", PNK_FLOAT, 1)                                                        \
    X(ARCSINH, arcsinh, "ArcSinh", PNK_FLOAT, 1)                                               \
    X(ARCCOSH, arccosh, "ArcCosh", PNK_FLOAT, 1)                                               \
    X(ARCTANH, arctanh, "ArcTanh", PNK_FLOAT, 1)                                               \
    X(FLOOR, floor, "Floor", PNK_SAME, 0)                                                      \
    X(CEIL, ceil, "Ceil", PNK_SAME, 0)                                                         \
    X(SIGMOID, sigmoid, "Sigmoid", PNK_FLOAT, 0)                                               \
    X(ERF, erf, "Erf", PNK_FLOAT, 0)                                                           \
    X(ERFINV, erfinv, "ErfInv", PNK_FLOAT, 0)                                                  \
    X(LOGICAL_NOT, logical_not, "LogicalNot", PNK_BOOL, 1)                                     \
    X(BITWISE_INVERT, bitwise_invert, "BitwiseInvert", PNK_INT, 0)                             \
    X(ISNAN, isnan, "IsNaN", PNK_BOOL, 1)                                                      \
    X(ISINF, isinf, "IsInf", PNK_BOOL, 1)                                                      \
    X(ISFINITE, isfinite, "IsFinite", PNK_BOOL, 1)                                             \
    X(ISPOSINF, isposinf, "IsPosInf", PNK_BOOL, 1)                                             \
    X(ISNEGINF, isneginf, "IsNegInf", PNK_BOOL, 1)                                             \
    X(CONJUGATE, conjugate, "Conjugate", PNK_SAME, 1)                                          \
    X(REAL, real, "Real", PNK_REAL, 1)                                                         \
    X(IMAG, imag, "Imag", PNK_REAL, 1)
#define PNK_UNARY_EXTRA(X)                                                                     \
    X(ROUND, round, "Round", PNK_SAME, 0)                                                      \
    X(NAN_TO_NUM, nan_to_num, "NanToNum", PNK_SAME, 0)

#define PNK_BINARY_OPS(X)                                                                      \
    X(ADD, add, "Add", PNK_SAME, 1)                                                            \
    X(SUBTRACT, subtract, "Subtract", PNK_SAME, 1)                                             \
    X(MULTIPLY, multiply, "Multiply", PNK_SAME, 1)                                             \
    X(DIVIDE, divide, "Divide", PNK_FLOAT, 1)                                                  \
    X(FLOOR_DIVIDE, floor_divide, "FloorDivide", PNK_SAME, 0)                                  \
    X(REMAINDER, remainder, "Remainder", PNK_SAME, 0)                                          \
    X(POWER, power, "Power", PNK_SAME, 1)                                                      \
    X(MAXIMUM, maximum, "Maximum", PNK_SAME, 0)                                                \
    X(MINIMUM, minimum, "Minimum", PNK_SAME, 0)                                                \
    X(ARCTAN2, arctan2, "ArcTan2", PNK_FLOAT, 0)                                               \
    X(LOGADDEXP, logaddexp, "LogAddExp", PNK_FLOAT, 1)                                         \
    X(EQUAL, equal, "Equal", PNK_BOOL, 1)                                                      \
    X(NOT_EQUAL, not_equal, "NotEqual", PNK_BOOL, 1)                                           \
    X(LESS, less, "Less", PNK_BOOL, 0)                                                         \
    X(LESS_EQUAL, less_equal, "LessEqual", PNK_BOOL, 0)                                        \
    X(GREATER, greater, "Greater", PNK_BOOL, 0)                                                \
    X(GREATER_EQUAL, greater_equal, "GreaterEqual", PNK_BOOL, 0)                               \
    X(LOGICAL_AND, logical_and, "LogicalAnd", PNK_BOOL, 1)                                     \
    X(LOGICAL_OR, logical_or, "LogicalOr", PNK_BOOL, 1)                                        \
    X(BITWISE_AND, bitwise_and, "BitwiseAnd", PNK_INT, 0)                                      \
    X(BITWISE_OR, bitwise_or, "BitwiseOr", PNK_INT, 0)                                         \
    X(BITWISE_XOR, bitwise_xor, "BitwiseXor", PNK_INT, 0)                                      \
    X(LEFT_SHIFT, left_shift, "LeftShift", PNK_SHIFT, 0)                                       \
    X(RIGHT_SHIFT, right_shift, "RightShift", PNK_SHIFT, 0)
#define PNK_BINARY_EXTRA(X) X(ISCLOSE, isclose, "IsClose", PNK_BOOL, 1)

/* The op enums, in list order. */
typedef enum pnK_unary_op {
#define PNK_U_ENTRY(E, name, prim, rule, cpx) PNK_U_##E,
    PNK_UNARY_OPS(PNK_U_ENTRY) PNK_UNARY_EXTRA(PNK_U_ENTRY)
#undef PNK_U_ENTRY
    PNK_U_COUNT
} pnK_unary_op;

typedef enum pnK_binary_op {
#define PNK_B_ENTRY(E, name, prim, rule, cpx) PNK_B_##E,
    PNK_BINARY_OPS(PNK_B_ENTRY) PNK_BINARY_EXTRA(PNK_B_ENTRY)
#undef PNK_B_ENTRY
    PNK_B_COUNT
} pnK_binary_op;

/* The params of every elementwise node. op: a pnK_unary_op or pnK_binary_op. The meaning of
 * the rest depends on op: ROUND p0 = 10^decimals; NAN_TO_NUM p0/p1/p2 = the values for
 * NaN/+inf/-inf; ISCLOSE p0 = rtol, p1 = atol, flag = equal_nan; EQUAL flag = equal_nan. */
typedef struct pnK_ew_params {
    int op;
    int flag;
    double p0, p1, p2;
} pnK_ew_params;

#endif /* PONTE_BACKEND_CPU_EW_OPS_H */
