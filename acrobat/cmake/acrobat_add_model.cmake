# acrobat_add_model(NAME MODEL.acr [SET NAME=VALUE ...])
#
# Compiles an .acr model ahead of time at build time (`acrobat compile`, see
# perfmem/acrobat/aot.h) and builds the static library acrobat_model_NAME from the generated
# C++. Its header acrobat_model_NAME.h declares
#
#   const perfmem::acrobat::AotModel& acrobat_model_NAME();
#
# which perfmem::acrobat::load_aot_model turns into a runtime: parameters from
# RuntimeOptions::params_file (safetensors) or hash-initialised, then
# Runtime::set_inputs / run_minibatch as for an interpreted program. SET fixes constants
# (e.g. SET H=512): the generated code is specialised to them. NAME must be a C identifier.
# Positions in run-time errors name the model's file name (the compiler runs in its folder).
function(acrobat_add_model NAME MODEL)
  cmake_parse_arguments(ARG "" "" "SET" ${ARGN})
  get_filename_component(model_path ${MODEL} ABSOLUTE)
  get_filename_component(model_dir ${model_path} DIRECTORY)
  get_filename_component(model_file ${model_path} NAME)
  set(target acrobat_model_${NAME})
  set(out_dir ${CMAKE_CURRENT_BINARY_DIR}/acrobat_models/${NAME})
  set(sets)
  foreach(s IN LISTS ARG_SET)
    list(APPEND sets --set ${s})
  endforeach()
  add_custom_command(
    OUTPUT ${out_dir}/${target}.cc ${out_dir}/${target}.h
    COMMAND ${CMAKE_COMMAND} -E make_directory ${out_dir}
    COMMAND $<TARGET_FILE:acrobat_compiler> compile ${model_file} ${sets} --name ${NAME}
            -o ${out_dir}/${target}.cc --header ${out_dir}/${target}.h
    WORKING_DIRECTORY ${model_dir}
    DEPENDS acrobat_compiler ${model_path}
    COMMENT "acrobat: compiling ${model_file} ahead of time (${NAME})"
    VERBATIM)
  add_library(${target} STATIC ${out_dir}/${target}.cc)
  target_include_directories(${target} PUBLIC ${out_dir})
  target_link_libraries(${target} PUBLIC perfmem_acrobat PRIVATE perfmem_options)
  # The generated fused kernels: vectorised NaN selects, and no contraction into fused
  # multiply-adds, so that they give the interpreted run's results bit for bit (kernels.cpp
  # builds with the same two options).
  target_compile_options(${target} PRIVATE -fno-trapping-math -ffp-contract=off)
endfunction()
