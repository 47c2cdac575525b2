// Instances to interpreter values (inputs.h).
#include "inputs.h"

#include <string>
#include <vector>

namespace perfmem::acrobat {
namespace {

Obj* list_cell(BlockArena& arena, Value head, Obj* tail) {
  auto* c = static_cast<Obj*>(arena.alloc(sizeof(Obj) + sizeof(Value)));
  c->tag = 1;
  c->n = 2;
  c->f[0] = head;
  c->f[1] = {0, tail};
  return c;
}

Obj* word_list(BlockArena& arena, const std::vector<int32_t>& w) {
  Obj* head = nullptr;
  for (size_t k = w.size(); k-- > 0;) head = list_cell(arena, {w[k], nullptr}, head);
  return head;
}

}  // namespace

Result<Value> convert_instance(const Program& program, const Instance& inst, const Type& t, size_t index,
                               BlockArena& arena) {
  auto mismatch = [&](const std::string& what) {
    return input_error("instance " + std::to_string(index), "main's parameter",
                       type_name(t, {}) + " (the program's input type)", what);
  };
  if (t.kind == TypeKind::kAdt && t.adt == program.tree_adt) {
    if (inst.kind != Instance::kTree) return mismatch("a sequence");
    if (inst.nodes.empty()) return mismatch("an empty tree");
    const size_t n = inst.nodes.size();
    for (size_t i = 0; i < n; ++i) {
      const TreeNode& nd = inst.nodes[i];
      if (nd.left >= 0 && (nd.right < 0 || nd.left >= static_cast<int32_t>(i) || nd.right >= static_cast<int32_t>(i)))
        return mismatch("a tree whose children do not precede their parent");
    }
    // The nodes in one block, in the pre-order a program walks them (root, left subtree, right
    // subtree): each instance's walk then reads memory in ascending order, which the hardware
    // prefetcher follows, instead of one dependent cache miss per node.
    constexpr size_t kStride = sizeof(Obj) + sizeof(Value) * 2;
    char* block = static_cast<char*>(arena.alloc_array(static_cast<int64_t>(n), kStride));
    std::vector<Obj*> made(n, nullptr);
    std::vector<size_t> stack{n - 1};
    size_t next = 0;
    while (!stack.empty()) {
      size_t i = stack.back();
      stack.pop_back();
      if (made[i] != nullptr) continue;  // a shared subtree is placed once (at most n nodes)
      made[i] = reinterpret_cast<Obj*>(block + next++ * kStride);
      if (inst.nodes[i].left >= 0) {
        stack.push_back(static_cast<size_t>(inst.nodes[i].right));
        stack.push_back(static_cast<size_t>(inst.nodes[i].left));
      }
    }
    for (size_t i = 0; i < n; ++i) {
      const TreeNode& nd = inst.nodes[i];
      bool leaf = nd.left < 0;
      Obj* o = made[i];
      if (o == nullptr) continue;  // not reachable from the root: never read
      o->tag = leaf ? 0 : 1;
      o->n = leaf ? 1 : 3;
      o->f[0] = {nd.word, nullptr};
      if (!leaf) {
        o->f[1] = {0, made[nd.left]};
        o->f[2] = {0, made[nd.right]};
      }
    }
    return Value{0, made.back()};
  }
  if (t.kind == TypeKind::kList && t.elems[0]->kind == TypeKind::kInt) {
    if (inst.kind != Instance::kSequence) return mismatch(inst.kind == Instance::kTree ? "a tree" : "nested sentences");
    return Value{0, word_list(arena, inst.words)};
  }
  if (t.kind == TypeKind::kList && t.elems[0]->kind == TypeKind::kList &&
      t.elems[0]->elems[0]->kind == TypeKind::kInt) {
    if (inst.kind != Instance::kNested) return mismatch(inst.kind == Instance::kTree ? "a tree" : "a flat sentence");
    Obj* head = nullptr;
    for (size_t k = inst.sentences.size(); k-- > 0;)
      head = list_cell(arena, {0, word_list(arena, inst.sentences[k])}, head);
    return Value{0, head};
  }
  return input_error(program.file, "function main", "a parameter of type Tree, List[Int] or List[List[Int]]",
                     type_name(t, {}));
}

}  // namespace perfmem::acrobat
