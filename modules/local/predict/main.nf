process PREDICT {
    tag "${meta.id}"
    label 'process_gpu'

    input:
    // the images named one by one ([] for a modality a space=brats row leaves empty), and the brain mask of the row ([] when it has none)
    tuple val(meta), path(t1, stageAs: 'input/t1/*'), path(t1ce, stageAs: 'input/t1ce/*'), path(t2, stageAs: 'input/t2/*'), path(flair, stageAs: 'input/flair/*'), path(brainmask, stageAs: 'input/brainmask/*'), path(models, stageAs: 'model_?')

    output:
    // a refused case (bad input) writes refusal.csv instead of its outputs (GLIOCASCADE_REFUSAL_RECORD)
    tuple val(meta), path("${task.ext.prefix ?: meta.id}_pred.nii.gz"), emit: pred, optional: true
    tuple val(meta), path("${task.ext.prefix ?: meta.id}_prob.nii.gz"), emit: prob, optional: true
    tuple val(meta), path("provenance_predict.json"), emit: provenance, optional: true
    tuple val(meta), path("refusal.csv"), emit: refusal, optional: true
    tuple val("${task.process}"), val("gliocascade"), eval("gliocascade --version | sed 's/.* //'"), topic: versions, emit: versions_gliocascade

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    def prefix = task.ext.prefix ?: "${meta.id}"
    def model_args = (models instanceof List ? models : [models]).collect { m -> "--model ${m}" }.join(' ')
    def mask_arg = brainmask ? "--brainmask ${brainmask}" : ''
    // a space=brats row may leave modalities empty ([]): predict accepts it when no model requires them
    def image_args = [t1: t1, t1ce: t1ce, t2: t2, flair: flair].findAll { _name, f -> f }.collect { name, f -> "--${name} ${f}" }.join(' ')
    """
    gliocascade predict ${image_args} ${mask_arg} ${model_args} --out . --case-id ${prefix} ${args}
    """

    stub:
    def prefix = task.ext.prefix ?: "${meta.id}"
    """
    touch ${prefix}_pred.nii.gz ${prefix}_prob.nii.gz provenance_predict.json
    """
}
