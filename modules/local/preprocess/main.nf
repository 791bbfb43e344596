process PREPROCESS {
    tag "${meta.id}"
    label 'process_medium'

    input:
    tuple val(meta), path(t1, stageAs: 'input/t1/*'), path(t1ce, stageAs: 'input/t1ce/*'), path(t2, stageAs: 'input/t2/*'), path(flair, stageAs: 'input/flair/*')
    path atlas

    output:
    // a refused case (bad input) writes refusal.csv instead of its outputs (GLIOCASCADE_REFUSAL_RECORD)
    tuple val(meta), path("preprocessed", type: 'dir'), emit: case_dir, optional: true
    tuple val(meta), path("preprocessed/${task.ext.prefix ?: meta.id}_t1.nii.gz"), path("preprocessed/${task.ext.prefix ?: meta.id}_t1ce.nii.gz"), path("preprocessed/${task.ext.prefix ?: meta.id}_t2.nii.gz"), path("preprocessed/${task.ext.prefix ?: meta.id}_flair.nii.gz"), emit: images, optional: true
    tuple val(meta), path("preprocessed/${task.ext.prefix ?: meta.id}_brainmask.nii.gz"), emit: brainmask, optional: true
    tuple val(meta), path("preprocessed/transforms", type: 'dir'), emit: transforms, optional: true
    tuple val(meta), path("preprocessed/provenance_preprocess.json"), emit: provenance, optional: true
    tuple val(meta), path("refusal.csv"), emit: refusal, optional: true
    tuple val("${task.process}"), val("gliocascade"), eval("gliocascade --version | sed 's/.* //'"), topic: versions, emit: versions_gliocascade

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    def prefix = task.ext.prefix ?: "${meta.id}"
    def atlas_arg = atlas ? "--atlas ${atlas}" : ''
    """
    gliocascade preprocess --t1 ${t1} --t1ce ${t1ce} --t2 ${t2} --flair ${flair} --case-id ${prefix} --out preprocessed --threads ${task.cpus} ${atlas_arg} ${args}
    """

    stub:
    def prefix = task.ext.prefix ?: "${meta.id}"
    """
    mkdir -p preprocessed/transforms
    touch preprocessed/${prefix}_{t1,t1ce,t2,flair,brainmask}.nii.gz preprocessed/provenance_preprocess.json
    touch preprocessed/transforms/brats_to_native.tfm preprocessed/transforms/native_reference.nii.gz
    """
}
