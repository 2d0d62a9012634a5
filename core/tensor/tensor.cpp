#include "tensor/tensor.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <sstream>
#include <stdexcept>

namespace attnlab {

int64_t numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string to_string(const Shape& shape) {
  std::ostringstream out;
  out << '[';
  for (size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << ']';
  return out.str();
}

int64_t TensorView::dim(int64_t axis) const {
  if (axis < 0) axis += rank();
  if (axis < 0 || axis >= rank())
    throw std::out_of_range("axis " + std::to_string(axis) + " out of range for shape " + to_string(shape_));
  return shape_[axis];
}

Eigen::Map<RowMajorMatrix> TensorView::matrix() const {
  const int64_t cols = shape_.empty() ? 1 : shape_.back();
  const int64_t rows = cols == 0 ? 0 : numel() / cols;
  return {data_, rows, cols};
}

void TensorView::fill(float value) const { std::fill_n(data_, numel(), value); }

void TensorView::copy_from(const TensorView& other) const {
  if (other.numel() != numel())
    throw std::invalid_argument("copy_from: " + to_string(other.shape()) + " into " + to_string(shape_));
  if (numel()) std::memmove(data_, other.data(), sizeof(float) * numel());
}

void Tensor::Free::operator()(float* p) const { std::free(p); }

static float* allocate_floats(int64_t n) {
  if (n == 0) return nullptr;
  const size_t bytes = ((sizeof(float) * n + 63) / 64) * 64;
  void* p = std::aligned_alloc(64, bytes);
  if (!p) throw std::bad_alloc();
  return static_cast<float*>(p);
}

Tensor::Tensor(Shape shape, float value) : data_(allocate_floats(attnlab::numel(shape))), shape_(std::move(shape)) {
  std::fill_n(data_.get(), numel(), value);
}

Tensor::Tensor(Shape shape, std::initializer_list<float> values) : Tensor(std::move(shape)) {
  if (static_cast<int64_t>(values.size()) != numel())
    throw std::invalid_argument("Tensor: " + std::to_string(values.size()) + " values for shape " + to_string(shape_));
  std::copy(values.begin(), values.end(), data_.get());
}

Tensor::Tensor(const Tensor& other) : data_(allocate_floats(other.numel())), shape_(other.shape_) {
  std::copy_n(other.data(), numel(), data_.get());
}

Tensor& Tensor::operator=(const Tensor& other) {
  if (this != &other) *this = Tensor(other);
  return *this;
}

TensorView Tensor::reshaped(Shape shape) const {
  if (attnlab::numel(shape) != numel())
    throw std::invalid_argument("reshape " + to_string(shape_) + " to " + to_string(shape));
  return {data_.get(), std::move(shape)};
}

}  // namespace attnlab
